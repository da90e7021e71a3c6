import type { KeyMoveRow, KeyMoveStep } from "../core/key-moves.ts";
import type { Database } from "../db/client.ts";

// migrate-keys' SQL: which rows reference a batch of keys, the KeyMove journal (in
// genstore's schema), and the one statement that updates a row's storageKeys (in the
// generations table, genstore's or the app's) together with the journal. Plain SQL that
// PGlite and PostgreSQL both run; every statement is its own short transaction.

export interface JournalEntry {
  sourceKey: string;
  targetKey: string;
  generationId: string | null;
  step: KeyMoveStep;
  size: number | null;
  etag: string | null;
  error: string | null;
}

export interface ReferencingRow extends KeyMoveRow {
  /** The key of the batch this row references. */
  key: string;
}

/** The key of a storageKeys entry in SQL: a JSON string, or an object's "key". */
const ENTRY_KEY_SQL = `(CASE jsonb_typeof(s.entry) WHEN 'string' THEN s.entry #>> '{}' WHEN 'object' THEN s.entry ->> 'key' END)`;

/**
 * The rows whose storageKeys reference any of keys. storageKeys is jsonb[] without an index
 * on the keys inside it, so this is one sequential scan of Generation per call, joined to
 * the batch by a hash on the key: call it once per page of keys, not once per key. Rows
 * that name another provider or bucket do not reference these objects.
 */
export async function findReferencingRows(
  db: Database,
  keys: string[],
  where: { provider: string; bucket: string },
): Promise<ReferencingRow[]> {
  if (keys.length === 0) return [];
  const t = await db.generations();
  const rows = await db.query<ReferencingRow>(
    `SELECT DISTINCT w."key", ${t.col("id", "g")}::text AS "id", ${t.col("userId", "g")} AS "userId",
            ${t.col("prompt", "g")} AS "prompt", ${t.col("operationType", "g")} AS "operationType",
            to_jsonb(${t.col("storageKeys", "g")}) AS "storageKeys"
       FROM ${t.name} g
       CROSS JOIN LATERAL unnest(${t.col("storageKeys", "g")}) AS s(entry)
       JOIN unnest($1::text[]) AS w("key") ON w."key" = ${ENTRY_KEY_SQL}
      WHERE (${t.col("storageProvider", "g")} IS NULL OR ${t.col("storageProvider", "g")} = $2)
        AND (${t.col("storageBucket", "g")} IS NULL OR ${t.col("storageBucket", "g")} = $3)`,
    keys,
    where.provider,
    where.bucket,
  );
  return rows.map((row) => ({ ...row, storageKeys: asArray(row.storageKeys) }));
}

/** Journal entries whose source or target is one of keys. */
export async function readJournal(db: Database, keys: string[]): Promise<JournalEntry[]> {
  if (keys.length === 0) return [];
  const rows = await db.query<JournalEntry>(
    `SELECT "sourceKey", "targetKey", "generationId", "step", "size"::float8 AS "size", "etag", "error"
       FROM "KeyMove" WHERE "sourceKey" = ANY($1::text[]) OR "targetKey" = ANY($1::text[])`,
    keys,
  );
  return rows.map(normalizeEntry);
}

/** Unfinished journal entries not touched since `before` (their source may be gone), by sourceKey. */
export async function readStaleJournal(
  db: Database,
  options: { before: string; prefix?: string; after?: string; limit: number },
): Promise<JournalEntry[]> {
  const rows = await db.query<JournalEntry>(
    `SELECT "sourceKey", "targetKey", "generationId", "step", "size"::float8 AS "size", "etag", "error"
       FROM "KeyMove"
      WHERE "step" IN ('planned', 'copied', 'recorded') AND "updatedAt" < $1::timestamp
        AND ($2::text IS NULL OR starts_with("sourceKey", $2::text))
        AND ($3::text IS NULL OR "sourceKey" > $3::text)
      ORDER BY "sourceKey" LIMIT $4`,
    options.before,
    options.prefix ?? null,
    options.after ?? null,
    options.limit,
  );
  return rows.map(normalizeEntry);
}

/**
 * The database's clock, as the journal's "updatedAt" column stores it (timestamp(3), as
 * text so no time zone conversion happens on the way out and back in).
 */
export async function databaseNow(db: Database): Promise<string> {
  const [row] = await db.query<{ now: string }>(`SELECT CURRENT_TIMESTAMP::timestamp(3)::text AS "now"`);
  return row!.now;
}

/**
 * Journals new moves as "planned". Returns the source keys actually inserted: a move
 * whose target another source already claims is not (targetKey is unique).
 */
export async function insertPlanned(
  db: Database,
  moves: { sourceKey: string; targetKey: string; generationId: string | null }[],
): Promise<Set<string>> {
  if (moves.length === 0) return new Set();
  const rows = await db.query<{ sourceKey: string }>(
    `INSERT INTO "KeyMove" ("sourceKey", "targetKey", "generationId", "step", "updatedAt")
     SELECT s, t, g, 'planned', CURRENT_TIMESTAMP FROM unnest($1::text[], $2::text[], $3::text[]) AS x(s, t, g)
     ON CONFLICT DO NOTHING
     RETURNING "sourceKey"`,
    moves.map((m) => m.sourceKey),
    moves.map((m) => m.targetKey),
    moves.map((m) => m.generationId),
  );
  return new Set(rows.map((r) => r.sourceKey));
}

/** The row's storageKeys now, or undefined when the row no longer exists. */
export async function readStorageKeys(db: Database, generationId: string): Promise<unknown[] | undefined> {
  const t = await db.generations();
  const [row] = await db.query<{ storageKeys: unknown }>(
    `SELECT to_jsonb(${t.col("storageKeys")}) AS "storageKeys" FROM ${t.name} WHERE ${t.col("id")}::text = $1`,
    generationId,
  );
  return row === undefined ? undefined : asArray(row.storageKeys);
}

/**
 * In one statement (one transaction): the row's storageKeys become `next` if they still
 * equal `expected` (compare-and-set, so a concurrent change by the app is never lost),
 * and the journal entry becomes "recorded" with the target's size and etag. Without a
 * row to change (orphans, or a row already pointing at the target) only the journal is
 * written. Returns false when the row changed meanwhile: read it again and retry.
 */
export async function recordMove(
  db: Database,
  move: { sourceKey: string; size: number; etag: string },
  row?: { generationId: string; expected: unknown[]; next: unknown[] },
): Promise<boolean> {
  if (row === undefined) {
    await db.query(
      `UPDATE "KeyMove" SET "step" = 'recorded', "size" = $2, "etag" = $3, "error" = NULL, "updatedAt" = CURRENT_TIMESTAMP WHERE "sourceKey" = $1`,
      move.sourceKey,
      move.size,
      move.etag,
    );
    return true;
  }
  const t = await db.generations();
  const [result] = await db.query<{ updated: number }>(
    `WITH g AS (
       UPDATE ${t.name}
          SET ${t.col("storageKeys")} = ARRAY(SELECT e FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x(e, i) ORDER BY i),
              ${t.col("updatedAt")} = ${t.nowSql("updatedAt")}
        WHERE ${t.col("id")}::text = $1 AND to_jsonb(${t.col("storageKeys")}) = $3::jsonb
        RETURNING 1
     ), j AS (
       UPDATE "KeyMove" SET "step" = 'recorded', "size" = $5, "etag" = $6, "error" = NULL, "updatedAt" = CURRENT_TIMESTAMP
        WHERE "sourceKey" = $4 AND EXISTS (SELECT 1 FROM g)
        RETURNING 1
     )
     SELECT (SELECT count(*) FROM g)::int AS "updated", (SELECT count(*) FROM j)::int AS "journal"`,
    row.generationId,
    JSON.stringify(row.next),
    JSON.stringify(row.expected),
    move.sourceKey,
    move.size,
    move.etag,
  );
  return Number(result?.updated ?? 0) > 0;
}

export async function markDone(db: Database, sourceKeys: string[]): Promise<void> {
  if (sourceKeys.length === 0) return;
  await db.query(
    `UPDATE "KeyMove" SET "step" = 'done', "error" = NULL, "updatedAt" = CURRENT_TIMESTAMP WHERE "sourceKey" = ANY($1::text[]) AND "step" <> 'done'`,
    sourceKeys,
  );
}

export async function markFailed(db: Database, sourceKey: string, error: string): Promise<void> {
  await db.query(
    `UPDATE "KeyMove" SET "error" = $2, "updatedAt" = CURRENT_TIMESTAMP WHERE "sourceKey" = $1`,
    sourceKey,
    error,
  );
}

function normalizeEntry(row: JournalEntry): JournalEntry {
  return { ...row, size: row.size === null || row.size === undefined ? null : Number(row.size) };
}

function asArray(value: unknown): unknown[] {
  if (typeof value === "string") return JSON.parse(value) as unknown[];
  return Array.isArray(value) ? value : [];
}
