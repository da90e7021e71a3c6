// The generations table as genstore sees it, whoever owns it. genstore's own table has
// Prisma's field names; an app's table (attached) can have its own table name (@@map),
// column names (@map), status vocabulary (a Prisma enum), and columns genstore does not
// know. Everything that reads or writes the table builds its SQL from a GenerationTable,
// so a mapping is applied in one place. Pure: the shape of the table comes in as data
// (read from the catalog by src/db/generations.ts).
import { STATUSES, type Status } from "./status.ts";

/** The fields genstore reads and writes, by their Prisma names (what `list --json` prints). */
export const GENERATION_FIELDS = [
  "id",
  "userId",
  "prompt",
  "status",
  "replicateId",
  "imageUrls",
  "storageProvider",
  "storageBucket",
  "storageKeys",
  "operationType",
  "storageContext",
  "metadata",
  "createdAt",
  "updatedAt",
  "completedAt",
  "error",
] as const;
export type GenerationField = (typeof GENERATION_FIELDS)[number];

/** Fields a table may lack: their values are then kept in metadata under the same name. */
export const OPTIONAL_FIELDS: readonly GenerationField[] = ["completedAt", "error", "imageUrls"];

export type FieldKind = "id" | "text" | "status" | "timestamp" | "jsonb" | "jsonb[]" | "text[]";

interface FieldSpec {
  kind: FieldKind;
  /** The line a Prisma schema needs for it (db check prints it with the @map name). */
  prisma: string;
}

export const FIELD_SPECS: Record<GenerationField, FieldSpec> = {
  id: { kind: "id", prisma: "String @id @default(cuid())" },
  userId: { kind: "text", prisma: "String" },
  prompt: { kind: "text", prisma: "String" },
  status: { kind: "status", prisma: 'String @default("starting")' },
  replicateId: { kind: "text", prisma: "String? @unique" },
  imageUrls: { kind: "text[]", prisma: "String[] @default([])" },
  storageProvider: { kind: "text", prisma: "String?" },
  storageBucket: { kind: "text", prisma: "String?" },
  storageKeys: { kind: "jsonb[]", prisma: "Json[] @default([])" },
  operationType: { kind: "text", prisma: "String?" },
  storageContext: { kind: "text", prisma: "String?" },
  metadata: { kind: "jsonb", prisma: 'Json? @default("{}")' },
  createdAt: { kind: "timestamp", prisma: "DateTime @default(now())" },
  updatedAt: { kind: "timestamp", prisma: "DateTime @updatedAt" },
  completedAt: { kind: "timestamp", prisma: "DateTime?" },
  error: { kind: "text", prisma: "String?" },
};

/** A generation row with Prisma's field names, whatever the table calls them. */
export interface GenerationRecord {
  id: string;
  userId: string;
  prompt: string;
  /** One of Replicate's six statuses, or the app's own value when the mapping has none for it. */
  status: string;
  replicateId: string | null;
  imageUrls: string[];
  storageProvider: string | null;
  storageBucket: string | null;
  storageKeys: unknown[];
  operationType: string | null;
  storageContext: string | null;
  metadata: unknown;
  createdAt: Date;
  updatedAt: Date;
  completedAt: Date | null;
  error: string | null;
}

/** Where the table is and what its names are (the configuration, resolved). */
export interface GenerationMapping {
  schema: string;
  table: string;
  /** The table's column for each field (the field's own name when not mapped). */
  columns: Record<GenerationField, string>;
  /** The table's value for each of Replicate's statuses (the status itself when not mapped). */
  status: Record<Status, string>;
  /** Values for the app's NOT NULL columns without a default, used when genstore inserts a row. */
  defaults: Record<string, string | number | boolean | null>;
}

/** The table as the catalog describes it. */
export interface TableShape {
  columns: Map<string, ColumnShape>;
  /** Columns that a single-column unique index or constraint covers. */
  uniqueColumns: Set<string>;
  /** Index definitions (pg_indexes.indexdef), to tell which of list's indexes exist. */
  indexes: string[];
}

export interface ColumnShape {
  /** information_schema's data_type: text, character varying, jsonb, ARRAY, USER-DEFINED, timestamp without time zone, … */
  dataType: string;
  /** udt_name: _jsonb, _text, an enum's name, … */
  udtName: string;
  udtSchema: string;
  nullable: boolean;
  hasDefault: boolean;
  /** The labels of an enum type. */
  enumValues?: string[];
}

export type TableMode = "owned" | "attached";

/** Quotes an identifier for SQL (the only way names reach a statement). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal for SQL. */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

export function defaultMapping(schema: string, table = "Generation"): GenerationMapping {
  return {
    schema,
    table,
    columns: Object.fromEntries(GENERATION_FIELDS.map((f) => [f, f])) as Record<GenerationField, string>,
    status: Object.fromEntries(STATUSES.map((s) => [s, s])) as Record<Status, string>,
    defaults: {},
  };
}

/** Why the shape cannot serve as genstore's generations table (required fields absent), or none. */
export function missingRequiredFields(mapping: GenerationMapping, shape: TableShape): GenerationField[] {
  return GENERATION_FIELDS.filter((f) => !OPTIONAL_FIELDS.includes(f) && !shape.columns.has(mapping.columns[f]));
}

/**
 * The generations table, resolved: its SQL names, how its rows read back as
 * GenerationRecord and how genstore's writes become its columns.
 */
export class GenerationTable {
  /** `"schema"."table"` */
  readonly name: string;
  private readonly fromApp: Map<string, Status>;

  constructor(
    readonly mode: TableMode,
    readonly mapping: GenerationMapping,
    readonly shape: TableShape,
  ) {
    this.name = `${quoteIdent(mapping.schema)}.${quoteIdent(mapping.table)}`;
    this.fromApp = new Map();
    for (const status of STATUSES) {
      const value = mapping.status[status];
      if (!this.fromApp.has(value)) this.fromApp.set(value, status);
    }
  }

  /** "public.generations (the app's table)" */
  get describe(): string {
    return `${this.mapping.schema}.${this.mapping.table} (${this.mode === "owned" ? "genstore's own table" : "the app's table, attached"})`;
  }

  has(field: GenerationField): boolean {
    return this.shape.columns.has(this.mapping.columns[field]);
  }

  /** The quoted column of a field, optionally prefixed by a table alias. */
  col(field: GenerationField, alias?: string): string {
    const column = quoteIdent(this.mapping.columns[field]);
    return alias ? `${alias}.${column}` : column;
  }

  /** The table's value for a status. */
  statusValue(status: Status): string {
    return this.mapping.status[status];
  }

  /** Replicate's status for the table's value (the value itself when the mapping has none). */
  statusFromApp(value: string): string {
    return this.fromApp.get(value) ?? value;
  }

  /** `<col> IN ('A', 'B')` for a set of statuses, in the table's vocabulary. */
  statusInSql(statuses: readonly Status[], alias?: string): string {
    const values = [...new Set(statuses.map((s) => this.statusValue(s)))];
    if (values.length === 0) return "false";
    // Literals take the column's type (text, or the app's enum), so its index serves.
    return `${this.col("status", alias)} IN (${values.map(quoteLiteral).join(", ")})`;
  }

  /**
   * The select list that reads a row as GenerationRecord's fields: every field under its
   * Prisma name; a field the table lacks reads as NULL (decode takes it from metadata).
   * Arrays and JSON come back as one jsonb value each, the same on both drivers. `fields`
   * reads only those (decode then leaves the others empty). `epochMs` reads timestamps as
   * milliseconds since the epoch (a float8): cheaper to read than their text, for scans of
   * millions of rows; decode takes either.
   */
  selectList(
    alias?: string,
    fields: readonly GenerationField[] = GENERATION_FIELDS,
    options: { epochMs?: boolean } = {},
  ): string {
    return fields
      .map((field) => {
        if (!this.has(field)) return `NULL AS ${quoteIdent(field)}`;
        const col = this.col(field, alias);
        const kind = FIELD_SPECS[field].kind;
        const expr =
          kind === "jsonb[]" || kind === "text[]"
            ? `to_jsonb(${col})`
            : kind === "status" || kind === "id"
              ? `${col}::text`
              : kind === "timestamp"
                ? options.epochMs
                  ? `(extract(epoch FROM ${this.utcTimestamp(field, col)}) * 1000)::float8`
                  : this.utcTimestamp(field, col)
                : col;
        return `${expr} AS ${quoteIdent(field)}`;
      })
      .join(", ");
  }

  /** A row as read with selectList, as a GenerationRecord. */
  decode(raw: Record<string, unknown>): GenerationRecord {
    const metadata = parseJson(raw["metadata"]) ?? {};
    const kept = (field: GenerationField) =>
      !this.has(field) && isObject(metadata) ? (metadata[field] ?? null) : raw[field];
    const completedAt = kept("completedAt");
    return {
      id: String(raw["id"]),
      userId: raw["userId"] as string,
      prompt: raw["prompt"] as string,
      status: this.statusFromApp(String(raw["status"])),
      replicateId: (raw["replicateId"] as string | null) ?? null,
      imageUrls: asArray(kept("imageUrls")) as string[],
      storageProvider: (raw["storageProvider"] as string | null) ?? null,
      storageBucket: (raw["storageBucket"] as string | null) ?? null,
      storageKeys: asArray(raw["storageKeys"]),
      operationType: (raw["operationType"] as string | null) ?? null,
      storageContext: (raw["storageContext"] as string | null) ?? null,
      metadata,
      createdAt: asDate(raw["createdAt"])!,
      updatedAt: asDate(raw["updatedAt"])!,
      completedAt: asDate(completedAt),
      error: (kept("error") as string | null) ?? null,
    };
  }

  /**
   * The SET list (`"col" = <expr>`) for an update of `write`, the row's updatedAt included.
   * Fields the table lacks are folded into metadata (which then needs `currentMetadata`).
   */
  assignments(
    write: Partial<Record<GenerationField, unknown>>,
    param: (value: unknown) => string,
    currentMetadata?: unknown,
  ): string[] {
    const sets: string[] = [];
    let metadata = write.metadata;
    for (const field of GENERATION_FIELDS) {
      if (field === "metadata" || field === "id" || field === "updatedAt") continue;
      if (!(field in write) || write[field] === undefined) continue;
      const value = write[field];
      if (!this.has(field)) {
        if (!OPTIONAL_FIELDS.includes(field)) continue;
        metadata = {
          ...asObject(metadata ?? currentMetadata),
          [field]: value instanceof Date ? value.toISOString() : value,
        };
        continue;
      }
      sets.push(`${this.col(field)} = ${this.valueSql(field, value, param)}`);
    }
    if (metadata !== undefined) sets.push(`${this.col("metadata")} = ${this.valueSql("metadata", metadata, param)}`);
    sets.push(`${this.col("updatedAt")} = ${this.nowSql("updatedAt")}`);
    return sets;
  }

  /** The SQL for one field's value as a parameter, converted to the column's type. */
  valueSql(field: GenerationField, value: unknown, param: (value: unknown) => string): string {
    switch (FIELD_SPECS[field].kind) {
      case "jsonb[]":
        return `ARRAY(SELECT e FROM jsonb_array_elements(${param(JSON.stringify(value ?? []))}::jsonb) WITH ORDINALITY AS x(e, i) ORDER BY i)`;
      case "text[]":
        return `ARRAY(SELECT e FROM jsonb_array_elements_text(${param(JSON.stringify(value ?? []))}::jsonb) WITH ORDINALITY AS x(e, i) ORDER BY i)`;
      case "jsonb":
        return value === null ? "NULL" : `${param(JSON.stringify(value))}::jsonb`;
      case "timestamp":
        return value === null ? "NULL" : param(value instanceof Date ? value.toISOString() : value);
      case "status":
        return param(typeof value === "string" && isKnownStatus(value) ? this.statusValue(value) : value);
      default:
        return param(value);
    }
  }

  /**
   * A field's value as a set-based statement reads it from JSON (valueFromJsonSql): dates
   * as ISO text, a status in the table's vocabulary, anything else as it is.
   */
  jsonValue(field: GenerationField, value: unknown): unknown {
    if (value instanceof Date) return value.toISOString();
    if (field === "status" && typeof value === "string" && isKnownStatus(value)) return this.statusValue(value);
    return value ?? null;
  }

  /**
   * The SQL for one field's value read from the jsonb `expr` (written by jsonValue),
   * converted to the column's type: what valueSql does with a parameter, for statements
   * that write many rows from one jsonb array.
   */
  valueFromJsonSql(field: GenerationField, expr: string): string {
    switch (FIELD_SPECS[field].kind) {
      case "jsonb[]":
        return `ARRAY(SELECT e FROM jsonb_array_elements(coalesce(nullif(${expr}, 'null'::jsonb), '[]'::jsonb)) WITH ORDINALITY AS x(e, i) ORDER BY i)`;
      case "text[]":
        return `ARRAY(SELECT e FROM jsonb_array_elements_text(coalesce(nullif(${expr}, 'null'::jsonb), '[]'::jsonb)) WITH ORDINALITY AS x(e, i) ORDER BY i)`;
      case "jsonb":
        return `nullif(${expr}, 'null'::jsonb)`;
      default: {
        // Text from JSON takes the column's type explicitly: an enum (a status) or a
        // timestamp has no implicit cast from text in INSERT … SELECT or UPDATE … FROM.
        const column = this.shape.columns.get(this.mapping.columns[field]);
        const type = column ? `${quoteIdent(column.udtSchema)}.${quoteIdent(column.udtName)}` : "text";
        return `(${expr} #>> '{}')::${type}`;
      }
    }
  }

  /** The current time as the column stores it (Prisma keeps UTC in timestamp without time zone). */
  nowSql(field: GenerationField): string {
    const column = this.shape.columns.get(this.mapping.columns[field]);
    return column?.dataType === "timestamp with time zone" ? "now()" : "(now() AT TIME ZONE 'UTC')";
  }

  /** A timestamp column read as an instant (a timestamp without time zone holds UTC, as Prisma writes it). */
  private utcTimestamp(field: GenerationField, col: string): string {
    const column = this.shape.columns.get(this.mapping.columns[field]);
    return column?.dataType === "timestamp with time zone" ? col : `(${col} AT TIME ZONE 'UTC')`;
  }

  /** An instant as a parameter for a comparison with a timestamp column. */
  timestampParam(field: GenerationField, date: Date, param: (value: unknown) => string): string {
    const column = this.shape.columns.get(this.mapping.columns[field]);
    const type = column?.dataType === "timestamp with time zone" ? "timestamptz" : "timestamp";
    return `${param(date.toISOString())}::${type}`;
  }

  /**
   * What genstore writes when it creates a row for a prediction (an orphan): the columns it
   * fills, and the app's NOT NULL columns without a default that it cannot fill (with no
   * default configured), which make the insert impossible.
   */
  insertColumns(
    values: {
      id: string;
      userId: string;
      prompt: string;
      status: Status;
      replicateId: string;
    },
    param: (value: unknown) => string,
  ): { columns: string[]; values: string[]; blockers: string[] } {
    return this.insertList(
      (field) => param(field === "status" ? this.statusValue(values.status) : values[field as keyof typeof values]),
      param,
    );
  }

  /**
   * insertColumns for a set-based INSERT … SELECT over a jsonb array: each row's id, userId,
   * prompt, status and replicateId read from the element `element` (see jsonValue), and the
   * `more` fields too, where the table has their columns (a whole row in one write).
   */
  insertColumnsFromJson(
    element: string,
    param: (value: unknown) => string,
    more: readonly GenerationField[] = [],
  ): { columns: string[]; values: string[]; blockers: string[] } {
    return this.insertList(
      (field) => this.valueFromJsonSql(field, `${element}->${quoteLiteral(field)}`),
      param,
      more.filter((f) => this.has(f) && !["id", "userId", "prompt", "status", "replicateId"].includes(f)),
    );
  }

  private insertList(
    valueOf: (field: GenerationField) => string,
    param: (value: unknown) => string,
    more: readonly GenerationField[] = [],
  ): { columns: string[]; values: string[]; blockers: string[] } {
    const columns: string[] = [];
    const sqlValues: string[] = [];
    const add = (column: string, sql: string) => {
      columns.push(quoteIdent(column));
      sqlValues.push(sql);
    };
    const idColumn = this.shape.columns.get(this.mapping.columns.id);
    // A text id is made by genstore (Prisma's cuid() is made by the client, not the database);
    // another type (uuid, serial, identity) is left to the column's default.
    if (!idColumn || isTextType(idColumn) || !idColumn.hasDefault) add(this.mapping.columns.id, valueOf("id"));
    add(this.mapping.columns.userId, valueOf("userId"));
    add(this.mapping.columns.prompt, valueOf("prompt"));
    add(this.mapping.columns.status, valueOf("status"));
    add(this.mapping.columns.replicateId, valueOf("replicateId"));
    for (const field of more) add(this.mapping.columns[field], valueOf(field));
    const empty: Partial<Record<GenerationField, string>> = {
      createdAt: this.nowSql("createdAt"),
      updatedAt: this.nowSql("updatedAt"),
      storageKeys: "ARRAY[]::jsonb[]",
      imageUrls: "ARRAY[]::text[]",
      metadata: "'{}'::jsonb",
    };
    const filled = new Set(columns);
    for (const [field, sql] of Object.entries(empty) as [GenerationField, string][]) {
      const column = this.shape.columns.get(this.mapping.columns[field]);
      // updatedAt is Prisma's @updatedAt: no database default, the client sets it.
      if (column && (field === "updatedAt" || !column.hasDefault) && !more.includes(field))
        add(this.mapping.columns[field], sql);
    }
    for (const c of columns) filled.add(c);
    const blockers: string[] = [];
    for (const [name, column] of this.shape.columns) {
      if (filled.has(quoteIdent(name)) || column.nullable || column.hasDefault) continue;
      if (name in this.mapping.defaults) add(name, param(this.mapping.defaults[name]));
      else blockers.push(name);
    }
    return { columns, values: sqlValues, blockers };
  }
}

function isKnownStatus(value: string): value is Status {
  return (STATUSES as readonly string[]).includes(value);
}

export function isTextType(column: ColumnShape): boolean {
  return column.dataType === "text" || column.dataType === "character varying";
}

function parseJson(value: unknown): unknown {
  if (typeof value !== "string") return value ?? null;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function asObject(value: unknown): Record<string, unknown> {
  return isObject(value) ? value : {};
}

function asArray(value: unknown): unknown[] {
  const parsed = parseJson(value);
  return Array.isArray(parsed) ? parsed : [];
}

function asDate(value: unknown): Date | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value;
  if (typeof value !== "string" && typeof value !== "number") return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}
