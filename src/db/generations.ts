import type { GenerationsConfig } from "../config.ts";
import type { GenerationWrite } from "../core/generation-merge.ts";
import {
  defaultMapping,
  GenerationTable,
  missingRequiredFields,
  OPTIONAL_FIELDS,
  quoteIdent,
  quoteLiteral,
  type GenerationField,
  type ColumnShape,
  type GenerationMapping,
  type GenerationRecord,
  type TableMode,
  type TableShape,
} from "../core/generation-table.ts";
import { contextConditionSql, filterConditions } from "../core/list-query.ts";
import type { StorageContext } from "../core/operation.ts";
import type { Status } from "../core/status.ts";
import { ConfigError, DatabaseError, ExitCode, UserError } from "../errors.ts";
import type { Database, Queryable } from "./client.ts";
import { cursorBatches } from "./cursor.ts";

// The generations table: which one (genstore's own, or the app's, attached), what the
// catalog says of it, and the reads and the one write path the pipeline uses. Every write
// runs in a short transaction that first takes a per-prediction advisory lock (released at
// commit), then re-reads the row and lets the caller decide from it: two deliveries of one
// prediction, in one process or several, take turns here, and the second sees what the
// first wrote. The lock, not a unique index, is what keeps one row per prediction, so it
// holds on an app's table whose prediction column is not unique (db check warns).

/**
 * The table in use: the one genstore.config.json names; else a `Generation` table in the
 * connection's schema (an app made with the seed's schema: attached with no configuration);
 * else genstore's own, in its schema.
 */
export async function resolveGenerationTable(db: Database, config?: GenerationsConfig): Promise<GenerationTable> {
  const { mode, mapping } = await locateGenerationTable(db, config);
  const { schema, table } = mapping;
  const shape = await readTableShape(db, schema, table);
  if (shape.columns.size === 0) {
    if (mode === "owned")
      throw new DatabaseError(
        `genstore's generations table ${schema}.Generation does not exist in ${db.describe}.`,
        "Run `genstore db migrate`.",
      );
    throw new ConfigError(
      `The generations table ${schema}.${table} does not exist in ${db.describe}.`,
      "Check generations.table in genstore.config.json (schema.table, as the app's @@map names it).",
    );
  }
  const statusColumn = shape.columns.get(mapping.columns.status);
  const unknownValues = statusColumn?.enumValues
    ? [...new Set(Object.values(mapping.status))].filter((v) => !statusColumn.enumValues!.includes(v))
    : [];
  if (unknownValues.length > 0) {
    throw new UserError(
      `The status column of ${schema}.${table} is the enum ${statusColumn!.udtName} (${statusColumn!.enumValues!.join(", ")}), which has no ${unknownValues.map((v) => JSON.stringify(v)).join(", ")}.`,
      {
        exitCode: ExitCode.config,
        hint: 'Map each of Replicate\'s statuses to one of its values in genstore.config.json: "generations": { "status": { "succeeded": "COMPLETED", … } }.',
      },
    );
  }
  const missing = missingRequiredFields(mapping, shape);
  if (missing.length > 0) {
    const list = missing.map((f) => `${f} (column "${mapping.columns[f]}")`).join(", ");
    throw new UserError(`The generations table ${schema}.${table} has no column for ${list}.`, {
      exitCode: ExitCode.config,
      hint: "Map the app's names in genstore.config.json (generations.columns), or add the columns: `genstore db check` prints the lines for the app's schema.prisma.",
    });
  }
  return new GenerationTable(mode, mapping, shape);
}

/** Which table is in use (without reading its shape): see resolveGenerationTable. */
export async function locateGenerationTable(
  db: Database,
  config?: GenerationsConfig,
): Promise<{ mode: TableMode; mapping: GenerationMapping }> {
  let schema = db.schema;
  let table = "Generation";
  if (config?.table !== undefined) {
    const dot = config.table.indexOf(".");
    [schema, table] =
      dot >= 0 ? [config.table.slice(0, dot), config.table.slice(dot + 1)] : [db.appSchema, config.table];
  } else if (db.appSchema !== db.schema && (await tableExists(db, db.appSchema, "Generation"))) {
    schema = db.appSchema;
  }
  const mapping: GenerationMapping = { ...defaultMapping(schema, table), defaults: { ...config?.defaults } };
  Object.assign(mapping.columns, config?.columns);
  Object.assign(mapping.status, config?.status);
  return { mode: schema === db.schema && table === "Generation" ? "owned" : "attached", mapping };
}

export async function tableExists(db: Queryable, schema: string, table: string): Promise<boolean> {
  const [row] = await db.query<{ present: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AS present`,
    `${quoteIdent(schema)}.${quoteIdent(table)}`,
  );
  return row?.present === true;
}

/** Reads the table's columns (types, nullability, defaults, enum labels), unique columns and indexes from the catalog. */
export async function readTableShape(db: Queryable, schema: string, table: string): Promise<TableShape> {
  const [columns, unique, indexes] = await Promise.all([
    db.query<{
      name: string;
      udt: string;
      udt_schema: string;
      typtype: string;
      elemtyptype: string | null;
      nullable: boolean;
      has_default: boolean;
      enum_values: string[] | string | null;
    }>(
      `SELECT a.attname AS name, t.typname AS udt, tn.nspname AS udt_schema, t.typtype::text AS typtype,
              et.typtype::text AS elemtyptype, NOT a.attnotnull AS nullable,
              (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
              CASE WHEN t.typtype = 'e'
                   THEN (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
              END AS enum_values
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type t ON t.oid = a.atttypid
         JOIN pg_namespace tn ON tn.oid = t.typnamespace
         LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      schema,
      table,
    ),
    db.query<{ name: string }>(
      `SELECT a.attname AS name
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL`,
      schema,
      table,
    ),
    db.query<{ indexdef: string }>(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY indexname`,
      schema,
      table,
    ),
  ]);
  return {
    columns: new Map(
      columns.map((c): [string, ColumnShape] => [
        c.name,
        {
          dataType: dataTypeOf(c.udt, c.typtype),
          udtName: c.udt,
          udtSchema: c.udt_schema,
          nullable: c.nullable,
          hasDefault: c.has_default,
          ...(c.enum_values ? { enumValues: pgArray(c.enum_values) } : {}),
        },
      ]),
    ),
    uniqueColumns: new Set(unique.map((u) => u.name)),
    indexes: indexes.map((i) => i.indexdef),
  };
}

/** information_schema's names for the types genstore cares about. */
function dataTypeOf(udt: string, typtype: string): string {
  if (typtype === "e") return "USER-DEFINED";
  if (udt.startsWith("_")) return "ARRAY";
  const names: Record<string, string> = {
    varchar: "character varying",
    bpchar: "character",
    timestamp: "timestamp without time zone",
    timestamptz: "timestamp with time zone",
    int4: "integer",
    int8: "bigint",
    int2: "smallint",
    bool: "boolean",
  };
  return names[udt] ?? udt;
}

/** An array column as the driver returns it: an array, or its text form `{a,b}`. */
function pgArray(value: string[] | string): string[] {
  if (Array.isArray(value)) return value;
  const inner = value.replace(/^\{|\}$/g, "");
  return inner === "" ? [] : inner.split(",").map((v) => v.replace(/^"|"$/g, ""));
}

/** The predictions of rows still starting or processing, oldest first (what `recover --pending` polls). */
export async function runningPredictions(
  db: Database,
  options: { untouchedForMs?: number } = {},
): Promise<{ predictionIds: string[]; withoutPrediction: number }> {
  const t = await db.generations();
  const params: unknown[] = [];
  // Only rows nothing has written for a while: the others are being worked on (a webhook retry, a poll).
  const untouched =
    options.untouchedForMs === undefined
      ? ""
      : ` AND ${t.col("updatedAt")} < ${t.nowSql("updatedAt")} - $${params.push(options.untouchedForMs)} * interval '1 millisecond'`;
  const rows = await db.query<{ id: string | null }>(
    `SELECT ${t.col("replicateId")} AS id FROM ${t.name} WHERE ${t.statusInSql(["starting", "processing"])}${untouched} ORDER BY ${t.col("createdAt")}`,
    ...params,
  );
  const predictionIds = rows.map((r) => r.id).filter((id): id is string => id !== null);
  return { predictionIds, withoutPrediction: rows.length - predictionIds.length };
}

/** Which of these predictions have a row. */
export async function knownPredictions(db: Database, predictionIds: string[]): Promise<Set<string>> {
  if (predictionIds.length === 0) return new Set();
  const t = await db.generations();
  const rows = await db.query<{ id: string }>(
    `SELECT ${t.col("replicateId")} AS id FROM ${t.name} WHERE ${t.col("replicateId")} = ANY($1::text[])`,
    predictionIds,
  );
  return new Set(rows.map((r) => r.id));
}

// --- The pipeline's reads and its one write path --------------------------------------------

/** The row of a prediction, or, when it has none, the row `adoptId` names if that row has no prediction yet. */
export async function findRow(
  db: Queryable,
  t: GenerationTable,
  replicateId: string,
  adoptId?: string | null,
): Promise<{ row: GenerationRecord | null; adopted: boolean }> {
  const [row] = await db.query(
    `SELECT ${t.selectList()} FROM ${t.name} WHERE ${t.col("replicateId")} = $1 ORDER BY ${t.col("createdAt", t.name)}, ${t.col("id", t.name)} LIMIT 1`,
    replicateId,
  );
  if (row) return { row: t.decode(row), adopted: false };
  if (!adoptId) return { row: null, adopted: false };
  const [orphan] = await db.query(
    `SELECT ${t.selectList()} FROM ${t.name} WHERE ${t.col("id")}::text = $1 AND ${t.col("replicateId")} IS NULL`,
    adoptId,
  );
  return { row: orphan ? t.decode(orphan) : null, adopted: orphan !== undefined };
}

/** Whether a row with this id exists (a generationId taken by another prediction cannot be reused). */
export async function idTaken(db: Database, id: string): Promise<boolean> {
  const t = await db.generations();
  const rows = await db.query(`SELECT 1 FROM ${t.name} WHERE ${t.col("id")}::text = $1`, id);
  return rows.length > 0;
}

export interface RowWriteResult {
  /** The row after the write (or as found, when nothing changed). */
  row: GenerationRecord;
  created: boolean;
  changed: boolean;
}

/** An orphan's row cannot be created in this table as configured: no retry helps until the configuration changes. */
export class RowRefusedError extends UserError {
  override name = "RowRefusedError";
  readonly retryable = false;
  constructor(message: string, hint: string) {
    super(message, { hint, exitCode: ExitCode.config });
  }
}

/**
 * Locks the prediction, reads its row (or the adoptable row), and writes what `decide`
 * returns for it: nothing (null), an update, or, when there is no row, a new row with
 * `newId`. decide may run twice if the row appears between the read and the insert (the
 * app inserted it directly): it must be a pure function of the row.
 */
export async function writeRow(
  db: Database,
  input: { replicateId: string; adoptId?: string | null; newId: string },
  decide: (current: GenerationRecord | null) => GenerationWrite | null,
): Promise<RowWriteResult> {
  const t = await db.generations();
  return db.transaction(async (tx) => {
    await lockPrediction(tx, input.replicateId);
    let { row: current } = await findRow(tx, t, input.replicateId, input.adoptId);
    let created = false;
    let write = decide(current);
    if (current === null) {
      if (write === null) throw new Error(`decide returned nothing for a new row of prediction ${input.replicateId}`);
      created = await insertRow(tx, t, input.newId, input.replicateId, write);
      current = (await findRow(tx, t, input.replicateId)).row;
      if (current === null) {
        throw new RowRefusedError(
          `Cannot create the row of prediction ${input.replicateId}: generation id ${input.newId} belongs to another prediction.`,
          "Register the webhook with the generationId of this prediction's row, or leave it out.",
        );
      }
      // Someone else's row won the insert: decide again from it.
      if (!created) write = decide(current);
    }
    if (write === null) return { row: current, created, changed: created };
    return { row: await updateRow(tx, t, current, write), created, changed: true };
  });
}

/**
 * Locks the prediction and writes what `decide` returns for its row; no row, or nothing to
 * write (null), writes nothing. True when the row was changed.
 */
export async function updateExistingRow(
  db: Database,
  replicateId: string,
  decide: (current: GenerationRecord) => GenerationWrite | null,
): Promise<boolean> {
  const t = await db.generations();
  return db.transaction(async (tx) => {
    await lockPrediction(tx, replicateId);
    const { row } = await findRow(tx, t, replicateId);
    const write = row && decide(row);
    if (!row || !write) return false;
    await updateRow(tx, t, row, write);
    return true;
  });
}

/** Every write of a prediction's row holds this lock until its transaction ends. */
async function lockPrediction(tx: Queryable, replicateId: string): Promise<void> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, `genstore:prediction:${replicateId}`);
}

/**
 * writeRow for a row known by its id (doctor's repairs: a thumbnail made, an object adopted,
 * a loss recorded): the same prediction lock when the row has a prediction, then the row
 * itself locked and re-read, and `decide` called with it. Returns the row after the write,
 * or null when no row has this id.
 */
export async function writeRowById(
  db: Database,
  id: string,
  decide: (current: GenerationRecord) => GenerationWrite | null,
): Promise<RowWriteResult | null> {
  const t = await db.generations();
  return db.transaction(async (tx) => {
    const read = async () => {
      const [raw] = await tx.query(
        `SELECT ${t.selectList()} FROM ${t.name} WHERE ${t.col("id")}::text = $1 FOR UPDATE`,
        id,
      );
      return raw === undefined ? null : t.decode(raw);
    };
    let current = await read();
    if (current === null) return null;
    if (current.replicateId !== null) {
      await lockPrediction(tx, current.replicateId);
      current = (await read())!;
    }
    const write = decide(current);
    if (write === null) return { row: current, created: false, changed: false };
    return { row: await updateRow(tx, t, current, write), created: false, changed: true };
  });
}

// --- doctor's scans: every row, and every stored key in key order, without holding them ---------

export interface ScanScope {
  userId?: string;
  context?: StorageContext;
  since?: Date;
}

export interface StoredKeyRow {
  key: string;
  size: number | null;
  kind: string | null;
  generationId: string;
  replicateId: string | null;
  userId: string;
  lost: boolean;
}

function scopeConditions(t: GenerationTable, scope: ScanScope, param: (value: unknown) => string): string[] {
  const where = filterConditions(t, { userId: scope.userId, since: scope.since }, param);
  if (scope.context !== undefined) where.push(contextConditionSql(t, scope.context));
  return where;
}

/** One storageKeys entry per row (named so no column of an app's table can shadow them), as key (a plain string entry, or its `key`), size and kind. */
function storedKeysLateral(t: GenerationTable): string {
  return `CROSS JOIN LATERAL (
      SELECT CASE jsonb_typeof(e) WHEN 'string' THEN e #>> '{}' ELSE e ->> 'key' END AS entry_key,
             CASE WHEN jsonb_typeof(e -> 'size') = 'number' THEN (e ->> 'size')::float8 END AS entry_size,
             e ->> 'kind' AS entry_kind
        FROM unnest(g.${t.col("storageKeys")}) AS e) k`;
}

/** How many rows and stored keys the scope holds (for the progress line's ETA). */
export async function countScope(db: Database, scope: ScanScope): Promise<{ rows: number; keys: number }> {
  const t = await db.generations();
  const params: unknown[] = [];
  const where = scopeConditions(t, scope, (value) => `$${params.push(value)}`);
  const [row] = await db.query<{ rows: string | number; keys: string | number | null }>(
    `SELECT count(*) AS rows, sum(cardinality(${t.col("storageKeys")})) AS keys FROM ${t.name}${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""}`,
    ...params,
  );
  return { rows: Number(row?.rows ?? 0), keys: Number(row?.keys ?? 0) };
}

/** What scanRows reads of a row (what doctor checks); the others read as empty. */
export const SCAN_FIELDS = [
  "id",
  "userId",
  "prompt",
  "status",
  "replicateId",
  "imageUrls",
  "storageKeys",
  "operationType",
  "storageContext",
  "metadata",
  "createdAt",
] as const satisfies readonly GenerationField[];
export type ScannedRow = Pick<GenerationRecord, (typeof SCAN_FIELDS)[number]>;

/** Every row of the scope, batch by batch (in no particular order), with the SCAN_FIELDS only. */
export async function* scanRows(db: Database, scope: ScanScope, batchSize?: number): AsyncGenerator<ScannedRow[]> {
  const t = await db.generations();
  const params: unknown[] = [];
  const where = scopeConditions(t, scope, (value) => `$${params.push(value)}`);
  const sql = `SELECT ${t.selectList(undefined, SCAN_FIELDS, { epochMs: true })} FROM ${t.name}${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""}`;
  for await (const batch of cursorBatches<Record<string, unknown>>(db, sql, params, batchSize))
    yield batch.map((raw) => t.decode(raw));
}

/**
 * Every key the scope's rows list, in the byte order of the key (COLLATE "C", the order S3
 * lists in and compareKeys follows), with the row it belongs to; a key several rows list
 * comes once per row.
 */
export async function* scanStoredKeys(
  db: Database,
  scope: ScanScope,
  batchSize?: number,
): AsyncGenerator<StoredKeyRow[]> {
  const t = await db.generations();
  const params: unknown[] = [];
  const where = scopeConditions(t, scope, (value) => `$${params.push(value)}`);
  const sql = `SELECT k.entry_key AS key, k.entry_size AS size, k.entry_kind AS kind, g.${t.col("id")}::text AS "generationId", g.${t.col("replicateId")} AS "replicateId",
         g.${t.col("userId")} AS "userId",
         COALESCE(jsonb_typeof(g.${t.col("metadata")} -> 'lostObjects') = 'array'
           AND g.${t.col("metadata")} -> 'lostObjects' @> jsonb_build_array(jsonb_build_object('key', k.entry_key)), false) AS lost
    FROM ${t.name} g ${storedKeysLateral(t)}
   WHERE k.entry_key IS NOT NULL${where.length > 0 ? ` AND ${where.map((c) => `(${c})`).join(" AND ")}` : ""}
   ORDER BY k.entry_key COLLATE "C"`;
  for await (const batch of cursorBatches<StoredKeyRow>(db, sql, params, batchSize)) {
    for (const r of batch) if (r.size !== null) r.size = Number(r.size);
    yield batch;
  }
}

/** Which of these keys some row (any row, whatever the scope) lists. */
export async function keysListed(db: Database, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const t = await db.generations();
  const rows = await db.query<{ key: string }>(
    `SELECT DISTINCT k.entry_key AS key FROM ${t.name} g ${storedKeysLateral(t)} WHERE k.entry_key = ANY($1::text[])`,
    [...keys],
  );
  return new Set(rows.map((r) => r.key));
}

async function updateRow(
  tx: Queryable,
  t: GenerationTable,
  current: GenerationRecord,
  write: GenerationWrite,
): Promise<GenerationRecord> {
  const params: unknown[] = [current.id];
  const param = (value: unknown) => `$${params.push(value)}`;
  const sets = t.assignments(write, param, current.metadata);
  const [updated] = await tx.query(
    `UPDATE ${t.name} SET ${sets.join(", ")} WHERE ${t.col("id")}::text = $1 RETURNING ${t.selectList()}`,
    ...params,
  );
  return t.decode(updated!);
}

/** A bare row (the rest is written by the update that follows); false when a row already holds the id or prediction. */
async function insertRow(
  tx: Queryable,
  t: GenerationTable,
  id: string,
  replicateId: string,
  write: GenerationWrite,
): Promise<boolean> {
  const params: unknown[] = [];
  const param = (value: unknown) => `$${params.push(value)}`;
  const insert = t.insertColumns(
    {
      id,
      userId: write.userId ?? "",
      prompt: write.prompt ?? "",
      status: (write.status as Status | undefined) ?? "starting",
      replicateId,
    },
    param,
  );
  if (insert.blockers.length > 0) {
    const names = insert.blockers.map((c) => `"${c}"`).join(", ");
    throw new RowRefusedError(
      `Cannot create the row of prediction ${replicateId} in ${t.mapping.schema}.${t.mapping.table}: ${names} ${insert.blockers.length === 1 ? "is" : "are"} NOT NULL without a default, and genstore has no value for ${insert.blockers.length === 1 ? "it" : "them"}.`,
      `Give ${insert.blockers.length === 1 ? "it a value" : "them values"} in genstore.config.json: "generations": { "defaults": { ${insert.blockers.map((c) => `"${c}": …`).join(", ")} } }.`,
    );
  }
  const rows = await tx.query(
    `INSERT INTO ${t.name} (${insert.columns.join(", ")}) VALUES (${insert.values.join(", ")}) ON CONFLICT DO NOTHING RETURNING 1`,
    ...params,
  );
  return rows.length === 1;
}

// --- Many predictions at once (the webhook worker's non-final deliveries) ---------------------

/** What a batch writes for one prediction: its row's state after every delivery, and which fields changed. */
export interface BatchRowDecision {
  replicateId: string;
  /** The id of the row to create when there is none. */
  newId: string;
  /** The row's fields after the batch (a new row: all of them). */
  next: GenerationWrite;
  /** The fields that differ from the row as read (a new row: all of them); none: nothing to write. */
  changed: readonly string[];
}

export interface BatchWriteResult {
  /** Predictions whose row was created, updated or found unchanged, with the row's id. */
  written: Map<string, { id: string; created: boolean; changed: boolean }>;
  /** Predictions the batch could not write (a row appeared meanwhile, an id taken): for the one-at-a-time path. */
  skipped: string[];
}

/**
 * writeRow for many predictions in one transaction: takes their advisory locks in one
 * sorted order (a batch never deadlocks with another batch, and takes its turn with single
 * writers as writeRow does), reads and locks their rows in id order, lets `decide` fold
 * what each prediction's deliveries change into its row, then writes every new row with one
 * INSERT and every change with one UPDATE. `also` runs last, in the same transaction (the
 * queue marks the deliveries done there, so a row change and its delivery's completion
 * commit together).
 */
export async function writeRowsBatch(
  db: Database,
  replicateIds: readonly string[],
  decide: (current: ReadonlyMap<string, GenerationRecord>) => BatchRowDecision[],
  also?: (tx: Queryable, written: BatchWriteResult) => Promise<void>,
): Promise<BatchWriteResult> {
  const t = await db.generations();
  const sorted = [...new Set(replicateIds)].sort();
  return db.transaction(async (tx) => {
    await tx.query(
      `SELECT pg_advisory_xact_lock(hashtextextended('genstore:prediction:' || k, 0))
         FROM (SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i OFFSET 0) AS locked`,
      sorted,
    );
    const rows = await tx.query(
      `SELECT ${t.selectList()} FROM ${t.name} WHERE ${t.col("replicateId")} = ANY($1::text[]) ORDER BY ${t.col("id")} FOR UPDATE`,
      sorted,
    );
    // The oldest row of a prediction, as findRow picks it (an app's table may hold several).
    const current = new Map<string, GenerationRecord>();
    for (const record of rows.map((row) => t.decode(row)).sort(byAge)) {
      if (record.replicateId !== null && !current.has(record.replicateId)) current.set(record.replicateId, record);
    }
    const decisions = decide(current);
    const result: BatchWriteResult = { written: new Map(), skipped: [] };

    const fresh = decisions.filter((d) => !current.has(d.replicateId));
    if (fresh.length > 0) {
      // New rows are written whole: every field the table has, in the one INSERT.
      const fields = new Set<GenerationField>();
      for (const d of fresh) for (const f of Object.keys(d.next)) fields.add(f as GenerationField);
      for (const f of ["id", "createdAt", "updatedAt", "replicateId"] as const) fields.delete(f);
      const params: unknown[] = [];
      const param = (value: unknown) => `$${params.push(value)}`;
      const element = param(
        JSON.stringify(
          fresh.map((d) => {
            const row: Record<string, unknown> = { ...d.next, metadata: foldMissing(t, d.next, d.next.metadata) };
            const out: Record<string, unknown> = { id: d.newId, replicateId: d.replicateId };
            for (const f of fields) out[f] = t.jsonValue(f, row[f]);
            out["userId"] ??= "";
            out["prompt"] ??= "";
            out["status"] ??= t.jsonValue("status", "starting");
            return out;
          }),
        ),
      );
      const insert = t.insertColumnsFromJson("d", param, [...fields]);
      if (insert.blockers.length > 0) {
        // The one-at-a-time path says which columns block it, delivery by delivery.
        result.skipped.push(...fresh.map((d) => d.replicateId));
      } else {
        const inserted = await tx.query<{ id: string; replicateId: string }>(
          `INSERT INTO ${t.name} (${insert.columns.join(", ")})
           SELECT ${insert.values.join(", ")} FROM jsonb_array_elements(${element}::jsonb) AS d
           ON CONFLICT DO NOTHING
           RETURNING ${t.col("id")}::text AS id, ${t.col("replicateId")} AS "replicateId"`,
          ...params,
        );
        const ids = new Map(inserted.map((row) => [row.replicateId, row.id]));
        for (const d of fresh) {
          const id = ids.get(d.replicateId);
          if (id === undefined) result.skipped.push(d.replicateId);
          else result.written.set(d.replicateId, { id, created: true, changed: true });
          // Written whole by the INSERT: nothing left to update.
        }
      }
    }
    for (const d of decisions) {
      const row = current.get(d.replicateId);
      if (row) result.written.set(d.replicateId, { id: row.id, created: false, changed: d.changed.length > 0 });
    }

    const updates = decisions.filter((d) => current.has(d.replicateId) && result.written.get(d.replicateId)?.changed);
    if (updates.length > 0) await updateRows(tx, t, updates, current, result);
    await also?.(tx, result);
    return result;
  });
}

/** One UPDATE for every changed row: each row gets its state after the batch for every field any row changed. */
async function updateRows(
  tx: Queryable,
  t: GenerationTable,
  updates: BatchRowDecision[],
  current: ReadonlyMap<string, GenerationRecord>,
  result: BatchWriteResult,
): Promise<void> {
  const fields = new Set<GenerationField>();
  for (const d of updates) for (const field of d.changed) fields.add(field as GenerationField);
  fields.delete("id");
  fields.delete("updatedAt");
  fields.delete("replicateId");
  // A field the table lacks is kept in metadata (as assignments() does it for one row).
  const folded = [...fields].filter((f) => !t.has(f));
  for (const f of folded) fields.delete(f);
  if (folded.some((f) => OPTIONAL_FIELDS.includes(f))) fields.add("metadata");
  const elements = updates.map((d) => {
    const row = current.get(d.replicateId);
    const state = { ...row, ...d.next } as Record<string, unknown>;
    const element: Record<string, unknown> = { id: result.written.get(d.replicateId)!.id };
    const metadata = foldMissing(t, pick(state, folded), state["metadata"]);
    for (const f of fields) element[f] = t.jsonValue(f, f === "metadata" ? metadata : state[f]);
    return element;
  });
  const sets = [...fields].map((f) => `${t.col(f)} = ${t.valueFromJsonSql(f, `d->${quoteLiteral(f)}`)}`);
  sets.push(`${t.col("updatedAt")} = ${t.nowSql("updatedAt")}`);
  await tx.query(
    `UPDATE ${t.name} AS g SET ${sets.join(", ")}
       FROM jsonb_array_elements($1::jsonb) AS d
      WHERE g.${t.col("id")}::text = d->>'id'`,
    JSON.stringify(elements),
  );
}

/** metadata with the optional fields the table has no column for (as assignments() keeps them). */
function foldMissing(t: GenerationTable, state: Record<string, unknown>, metadata: unknown): unknown {
  let result = metadata;
  for (const f of OPTIONAL_FIELDS) {
    if (t.has(f) || !(f in state) || state[f] === undefined) continue;
    const value = state[f];
    result = { ...asRecord(result), [f]: value instanceof Date ? value.toISOString() : value };
  }
  return result;
}

function pick(state: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(fields.filter((f) => f in state).map((f) => [f, state[f]]));
}

function byAge(a: GenerationRecord, b: GenerationRecord): number {
  return a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
