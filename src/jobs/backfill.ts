import { isRelativeDate } from "../core/dates.ts";
import { contextFromOperationSql, OPERATION_TYPES, operationFromPromptSql } from "../core/operation.ts";
import type { Database } from "../db/client.ts";
import { Interrupted, UserError } from "../errors.ts";
import { formatCounts } from "../ui/format.ts";

// `backfill`: fills operationType/storageContext (and metadata.detectedBy) on rows that lack
// them, from the prompt prefix, as set-based SQL in PostgreSQL. Rows are taken in keyset
// batches by primary key; each batch is one statement (its own short transaction) that also
// saves the cursor, so a crash or Ctrl-C loses nothing and a rerun continues after the last
// batch done. The CASE expressions come from src/core/operation.ts (the one prefix table).

export interface BackfillInput {
  userId?: string;
  since?: Date;
  /**
   * --since as typed. A duration (7d) resolves to a different time on every run, so the
   * cursor is named by this text instead, and the time resolved by the run that saved the
   * cursor is kept in it and reused when resuming.
   */
  sinceText?: string;
  /** Rewrite every row in scope from its prompt, even rows that already have operationType. */
  force?: boolean;
  dryRun?: boolean;
  /** Rows per batch (default 10,000). */
  batchSize?: number;
}

export interface BackfillStart {
  /** Rows to do (one COUNT at the start), after the saved cursor when resuming. */
  total: number;
  /** The id the run continues after (a previous run was stopped), if any. */
  resumedFrom?: string;
  /** With force: rows whose operationType differs from what their prompt says. */
  disagreements?: number;
}

export interface BackfillProgress {
  updated: number;
  batches: number;
  total: number;
  /** The last id done (the saved cursor). */
  cursor: string;
  startedAt: number;
}

export interface BackfillDeps {
  db: Database;
  signal?: AbortSignal;
  onStart?: (info: BackfillStart) => void;
  onProgress?: (progress: BackfillProgress) => void;
}

export interface BackfillResult {
  dryRun: boolean;
  force: boolean;
  /** Rows written (with dryRun: rows that would be written). */
  updated: number;
  batches: number;
  /** Per operation type, rows written (or that would be). */
  byOperation: Record<string, number>;
  total: number;
  resumedFrom?: string;
  disagreements?: number;
  filters: { userId?: string; since?: string };
  cursorName: string;
  durationMs: number;
}

export const DEFAULT_BATCH_SIZE = 10_000;

/** The JobCursor name for a run: stable for the same filters and --force. */
export function backfillCursorName(input: Pick<BackfillInput, "userId" | "since" | "sinceText" | "force">): string {
  const since = isRelativeSince(input.sinceText) ? input.sinceText!.trim() : (input.since?.toISOString() ?? null);
  return `backfill:${JSON.stringify({ force: input.force === true, userId: input.userId ?? null, since })}`;
}

/** A --since that is a duration back from now (24h, 7d) rather than a date. */
function isRelativeSince(text: string | undefined): boolean {
  return isRelativeDate(text);
}

export async function runBackfill(input: BackfillInput, deps: BackfillDeps): Promise<BackfillResult> {
  const { db } = deps;
  const startedAt = Date.now();
  const force = input.force === true;
  const dryRun = input.dryRun === true;
  const batchSize = input.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new UserError(`Invalid batch size: ${batchSize}.`, { hint: "Use a whole number of at least 1." });
  const cursorName = backfillCursorName(input);
  const [saved] = await db.query<{ cursor: string | null; data: unknown }>(
    `SELECT "cursor", "data" FROM "JobCursor" WHERE "name" = $1`,
    cursorName,
  );
  const resumedFrom = saved?.cursor ?? undefined;
  // Resuming a relative --since: the time the first run resolved, not "7 days before now".
  const savedSince = (typeof saved?.data === "string" ? JSON.parse(saved.data) : saved?.data) as
    { since?: unknown } | undefined;
  const since =
    isRelativeSince(input.sinceText) && typeof savedSince?.since === "string"
      ? new Date(savedSince.since)
      : input.since;

  // The scope: the filters, and (without --force) only rows that lack operationType.
  const t = await db.generations();
  const id = t.col("id");
  const scope = (params: unknown[]) => {
    const param = (value: unknown) => `$${params.push(value)}`;
    const where: string[] = [];
    if (!force) where.push(`${t.col("operationType")} IS NULL`);
    if (input.userId !== undefined) where.push(`${t.col("userId")} = ${param(input.userId)}`);
    if (since !== undefined) where.push(`${t.col("createdAt")} >= ${t.timestampParam("createdAt", since, param)}`);
    return { where, param };
  };
  const whereSql = (where: string[]) => (where.length > 0 ? `WHERE ${where.join(" AND ")}` : "");

  let disagreements: number | undefined;
  if (force) {
    const params: unknown[] = [];
    const { where } = scope(params);
    where.push(
      `${t.col("operationType")} IS NOT NULL`,
      `${t.col("operationType")} IS DISTINCT FROM (${operationFromPromptSql(t.col("prompt"))})`,
    );
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${t.name} ${whereSql(where)}`,
      ...params,
    );
    disagreements = row?.n ?? 0;
  }

  const byOperation: Record<string, number> = Object.fromEntries(OPERATION_TYPES.map((o) => [o, 0]));
  const filters = { userId: input.userId, since: since?.toISOString() };
  const result = (updated: number, batches: number, total: number): BackfillResult => ({
    dryRun,
    force,
    updated,
    batches,
    byOperation,
    total,
    ...(resumedFrom !== undefined ? { resumedFrom } : {}),
    ...(disagreements !== undefined ? { disagreements } : {}),
    filters,
    cursorName,
    durationMs: Date.now() - startedAt,
  });

  if (dryRun) {
    const params: unknown[] = [];
    const { where, param } = scope(params);
    if (resumedFrom !== undefined) where.push(`${id} > ${param(resumedFrom)}`);
    const rows = await db.query<{ op: string; n: number }>(
      `SELECT ${operationFromPromptSql(t.col("prompt"))} AS op, count(*)::int AS n FROM ${t.name} ${whereSql(where)} GROUP BY 1`,
      ...params,
    );
    let total = 0;
    for (const row of rows) {
      byOperation[row.op] = Number(row.n);
      total += Number(row.n);
    }
    deps.onStart?.({ total, resumedFrom, disagreements });
    return result(total, 0, total);
  }

  const total = await (async () => {
    const params: unknown[] = [];
    const { where, param } = scope(params);
    if (resumedFrom !== undefined) where.push(`${id} > ${param(resumedFrom)}`);
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${t.name} ${whereSql(where)}`,
      ...params,
    );
    return Number(row?.n ?? 0);
  })();
  deps.onStart?.({ total, resumedFrom, disagreements });

  const operationSql = operationFromPromptSql(t.col("prompt", "g"));
  let cursor = resumedFrom;
  let updated = 0;
  let batches = 0;
  for (;;) {
    // The embedded database answers through promises alone; without a turn of the event
    // loop here a SIGINT handler would not run (and abort the signal) until the very end.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (deps.signal?.aborted) {
      throw new Interrupted(
        `Interrupted after ${updated.toLocaleString("en-US")} rows in ${batches} batch${batches === 1 ? "" : "es"}.`,
        "Run the same command again to continue where it stopped.",
      );
    }
    const params: unknown[] = [];
    const { where, param } = scope(params);
    if (cursor !== undefined) where.push(`${id} > ${param(cursor)}`);
    const limit = param(batchSize);
    const name = param(cursorName);
    const data = param(JSON.stringify(since !== undefined ? { since: since.toISOString() } : {}));
    // Without --force the UPDATE re-checks "operationType" IS NULL, so a row written
    // concurrently by the app between the SELECT and the UPDATE is left alone.
    const recheck = force ? "" : ` AND ${t.col("operationType", "g")} IS NULL`;
    // The batch's last id, as text (max() has no uuid form; ORDER BY works for every key type).
    const lastId = `(SELECT "id"::text FROM batch ORDER BY "id" DESC LIMIT 1)`;
    const sql = `
      WITH batch AS (
        SELECT ${id} AS "id" FROM ${t.name} ${whereSql(where)} ORDER BY ${id} LIMIT ${limit}
      ), updated AS (
        UPDATE ${t.name} AS g
        SET ${t.col("operationType")} = ${operationSql},
            ${t.col("storageContext")} = ${contextFromOperationSql(operationSql)},
            ${t.col("metadata")} = COALESCE(${t.col("metadata", "g")}, '{}'::jsonb) || jsonb_build_object('detectedBy', 'prompt-prefix'),
            ${t.col("updatedAt")} = ${t.nowSql("updatedAt")}
        FROM batch WHERE ${t.col("id", "g")} = batch."id"${recheck}
        RETURNING ${t.col("operationType", "g")} AS "operationType"
      ), saved AS (
        INSERT INTO "JobCursor" ("name", "cursor", "data", "updatedAt")
        SELECT ${name}::text, ${lastId}, ${data}::jsonb, CURRENT_TIMESTAMP FROM batch HAVING count(*) > 0
        ON CONFLICT ("name") DO UPDATE SET "cursor" = EXCLUDED."cursor", "updatedAt" = EXCLUDED."updatedAt"
        RETURNING 1
      )
      SELECT ${lastId} AS "lastId",
             (SELECT count(*)::int FROM batch) AS "scanned",
             (SELECT COALESCE(jsonb_object_agg(op, n), '{}'::jsonb)
                FROM (SELECT "operationType" AS op, count(*)::int AS n FROM updated GROUP BY 1) AS counts) AS "byOperation",
             (SELECT count(*)::int FROM saved) AS "saved"`;
    const [row] = await db.query<{
      lastId: string | null;
      scanned: number;
      byOperation: Record<string, number> | string;
    }>(sql, ...params);
    const scanned = Number(row?.scanned ?? 0);
    if (!row || scanned === 0 || row.lastId === null) break;
    const counts =
      typeof row.byOperation === "string" ? (JSON.parse(row.byOperation) as Record<string, number>) : row.byOperation;
    for (const [op, n] of Object.entries(counts)) {
      byOperation[op] = (byOperation[op] ?? 0) + Number(n);
      updated += Number(n);
    }
    batches += 1;
    cursor = row.lastId;
    deps.onProgress?.({ updated, batches, total, cursor, startedAt });
    if (scanned < batchSize) break;
  }
  // The run is complete: the next run starts from the beginning.
  await db.query(`DELETE FROM "JobCursor" WHERE "name" = $1`, cursorName);
  return result(updated, batches, total);
}

export function summaryLine(result: BackfillResult): string {
  const n = result.updated.toLocaleString("en-US");
  const ops = formatCounts(result.byOperation);
  if (result.dryRun) {
    return result.updated === 0
      ? "Dry run: nothing to backfill."
      : `Dry run: would backfill ${n} rows: ${ops}. Nothing was changed.`;
  }
  if (result.updated === 0)
    return result.force
      ? "Nothing to rewrite: no rows in scope."
      : "Nothing to backfill: every row in scope has an operationType.";
  return `Backfilled ${n} rows in ${result.batches} batch${result.batches === 1 ? "" : "es"}: ${ops}.`;
}
