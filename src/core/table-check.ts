// `genstore db check`: what the generations table (usually the app's) looks like to
// genstore, from the catalog's description of it. Pure: the shape comes in as data. It
// reports each field (found, missing, of another type), the status mapping, whether the
// prediction column is unique, which of list's indexes exist (with the CREATE INDEX for the
// others, never run), and for missing fields the lines to add to the app's schema.prisma.
import {
  FIELD_SPECS,
  GENERATION_FIELDS,
  GenerationTable,
  OPTIONAL_FIELDS,
  quoteIdent,
  type ColumnShape,
  type FieldKind,
  type GenerationField,
  type GenerationMapping,
  type TableMode,
  type TableShape,
} from "./generation-table.ts";
import type { Status } from "./status.ts";

export type FieldState = "found" | "missing" | "wrong-type";

export interface FieldCheck {
  field: GenerationField;
  column: string;
  state: FieldState;
  optional: boolean;
  /** The column's type, when it exists. */
  type?: string;
  /** What genstore needs. */
  expected: string;
}

export interface IndexCheck {
  /** What it serves: "list, newest first", "list --user", … */
  serves: string;
  columns: GenerationField[];
  present: boolean;
  /** The statement that creates it (genstore never runs it). */
  create: string;
}

export interface TableCheck {
  table: string;
  mode: TableMode;
  /** genstore can use the table as configured (warnings aside). */
  usable: boolean;
  fields: FieldCheck[];
  status: {
    /** "text", or the enum's name. */
    type: string;
    mapping: Record<Status, string>;
    /** Values of the app's enum that no status maps to (rows with them are listed as they are, and polled as starting). */
    unmappedAppValues: string[];
    /** Mapped values the enum does not have: writes would fail. */
    invalidValues: string[];
  };
  predictionIdUnique: boolean;
  indexes: IndexCheck[];
  /** NOT NULL columns without a default that genstore cannot fill when it creates a row (orphans). */
  insertBlockers: string[];
  /** Fields that are missing, as lines for the app's schema.prisma (model block). */
  prismaLines: string[];
  warnings: string[];
}

const EXPECTED: Record<FieldKind, string> = {
  id: "text, varchar or uuid",
  text: "text or varchar",
  status: "text, varchar or an enum",
  timestamp: "timestamp",
  jsonb: "jsonb",
  "jsonb[]": "jsonb[]",
  "text[]": "text[]",
};

function typeFits(kind: FieldKind, c: ColumnShape): boolean {
  const text = c.dataType === "text" || c.dataType === "character varying";
  switch (kind) {
    case "id":
      return text || c.dataType === "uuid" || c.dataType === "integer" || c.dataType === "bigint";
    case "text":
      return text;
    case "status":
      return text || c.dataType === "USER-DEFINED";
    case "timestamp":
      return c.dataType === "timestamp without time zone" || c.dataType === "timestamp with time zone";
    case "jsonb":
      return c.dataType === "jsonb";
    case "jsonb[]":
      return c.dataType === "ARRAY" && c.udtName === "_jsonb";
    case "text[]":
      return c.dataType === "ARRAY" && (c.udtName === "_text" || c.udtName === "_varchar");
  }
}

function describeType(c: ColumnShape): string {
  if (c.dataType === "ARRAY") return `${c.udtName.slice(1)}[]`;
  if (c.dataType === "USER-DEFINED") return `enum ${c.udtName}`;
  return c.dataType;
}

/** list's indexes: newest first, and narrowed by user, operation or status. */
const LIST_INDEXES: { serves: string; columns: GenerationField[] }[] = [
  { serves: "list, newest first", columns: ["createdAt", "id"] },
  { serves: "list --user", columns: ["userId", "createdAt", "id"] },
  { serves: "list --context (the operationType column)", columns: ["operationType", "createdAt", "id"] },
  { serves: "list --status, recover --pending", columns: ["status", "createdAt", "id"] },
];

export function checkTable(mode: TableMode, mapping: GenerationMapping, shape: TableShape): TableCheck {
  const fields: FieldCheck[] = GENERATION_FIELDS.map((field) => {
    const column = mapping.columns[field];
    const spec = FIELD_SPECS[field];
    const shaped = shape.columns.get(column);
    const optional = OPTIONAL_FIELDS.includes(field);
    const expected = EXPECTED[spec.kind];
    if (!shaped) return { field, column, state: "missing", optional, expected };
    return {
      field,
      column,
      state: typeFits(spec.kind, shaped) ? "found" : "wrong-type",
      optional,
      type: describeType(shaped),
      expected,
    };
  });

  const statusColumn = shape.columns.get(mapping.columns.status);
  const enumValues = statusColumn?.enumValues;
  const mapped = new Set(Object.values(mapping.status));
  const status = {
    type: statusColumn?.dataType === "USER-DEFINED" ? statusColumn.udtName : "text",
    mapping: mapping.status,
    unmappedAppValues: enumValues ? enumValues.filter((v) => !mapped.has(v)) : [],
    invalidValues: enumValues ? [...mapped].filter((v) => !enumValues.includes(v)) : [],
  };

  const predictionIdUnique = shape.uniqueColumns.has(mapping.columns.replicateId);
  const table = `${quoteIdent(mapping.schema)}.${quoteIdent(mapping.table)}`;
  const indexed = shape.indexes.map(indexColumns);
  const indexes: IndexCheck[] = LIST_INDEXES.filter((i) =>
    i.columns.every((f) => shape.columns.has(mapping.columns[f])),
  ).map((i) => {
    const columns = i.columns.map((f) => mapping.columns[f]);
    // The id only breaks ties of createdAt: an index without it serves as well.
    const needed = columns.slice(0, -1);
    const present = indexed.some((cols) => needed.every((c, n) => cols[n] === c));
    const name = `${mapping.table}_${columns.join("_")}_idx`.slice(0, 63);
    const list = i.columns.map((f, n) => `${quoteIdent(columns[n]!)}${f === "createdAt" || f === "id" ? " DESC" : ""}`);
    return {
      serves: i.serves,
      columns: i.columns,
      present,
      create: `CREATE INDEX CONCURRENTLY ${quoteIdent(name)} ON ${table} (${list.join(", ")});`,
    };
  });
  if (shape.columns.has(mapping.columns.replicateId) && !predictionIdUnique) {
    const name = `${mapping.table}_${mapping.columns.replicateId}_key`.slice(0, 63);
    indexes.push({
      serves: "one row per prediction (the webhook upserts by it)",
      columns: ["replicateId"],
      present: false,
      create: `CREATE UNIQUE INDEX CONCURRENTLY ${quoteIdent(name)} ON ${table} (${quoteIdent(mapping.columns.replicateId)});`,
    });
  }

  const usableFields = fields.every((f) => f.state === "found" || (f.state === "missing" && f.optional));
  const usable = usableFields && status.invalidValues.length === 0;
  const insertBlockers = usableFields
    ? new GenerationTable(mode, mapping, shape).insertColumns(
        { id: "x", userId: "x", prompt: "x", status: "starting", replicateId: "x" },
        () => "$1",
      ).blockers
    : [];

  const prismaLines = fields
    .filter((f) => f.state === "missing")
    .map((f) => {
      const map = f.column === f.field ? "" : ` @map(${JSON.stringify(f.column)})`;
      return `  ${f.field.padEnd(15)} ${FIELD_SPECS[f.field].prisma}${map}`;
    });

  const warnings: string[] = [];
  if (!predictionIdUnique && shape.columns.has(mapping.columns.replicateId))
    warnings.push(
      `${mapping.columns.replicateId} is not unique: genstore keeps one row per prediction itself (a per-prediction lock), but rows the app inserts could duplicate one. Add the unique index below.`,
    );
  if (status.unmappedAppValues.length > 0)
    warnings.push(
      `No Replicate status maps to ${status.unmappedAppValues.join(", ")}: genstore treats such rows as not yet started.`,
    );
  for (const f of fields.filter((f) => f.state === "missing" && f.optional))
    warnings.push(`${f.field} has no column: genstore keeps its value in metadata.${f.field}.`);
  if (insertBlockers.length > 0)
    warnings.push(
      `Orphans (predictions without a row) cannot be created while ${insertBlockers.join(", ")} ${insertBlockers.length === 1 ? "has" : "have"} no value: set generations.defaults in genstore.config.json.`,
    );
  for (const i of indexes.filter((i) => !i.present)) warnings.push(`Missing index for ${i.serves}.`);

  return {
    table: `${mapping.schema}.${mapping.table}`,
    mode,
    usable,
    fields,
    status,
    predictionIdUnique,
    indexes,
    insertBlockers,
    prismaLines,
    warnings,
  };
}

/** The columns of an index definition, in order (`… USING btree ("a" DESC, b)` → ["a", "b"]). */
export function indexColumns(indexdef: string): string[] {
  const start = /USING \w+ \(/.exec(indexdef);
  if (!start) return [];
  // The key list ends at the parenthesis that closes it (expressions may hold their own).
  let depth = 1;
  let end = start.index + start[0].length;
  for (; end < indexdef.length && depth > 0; end++) {
    if (indexdef[end] === "(") depth++;
    else if (indexdef[end] === ")") depth--;
  }
  return indexdef
    .slice(start.index + start[0].length, end - 1)
    .split(",")
    .map((part) => {
      const name = part.trim().replace(/\s+(ASC|DESC)(\s+NULLS\s+(FIRST|LAST))?$/i, "");
      return name.startsWith('"') ? name.slice(1, -1).replace(/""/g, '"') : name;
    });
}
