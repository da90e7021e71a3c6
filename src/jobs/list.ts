import type { GenerationRecord } from "../core/generation-table.ts";
import { buildListQuery, filterConditions, type ListFilters } from "../core/list-query.ts";
import {
  contextForOperation,
  isOperationType,
  knownOperationSql,
  operationFromPromptSql,
  type OperationType,
  type StorageContext,
} from "../core/operation.ts";
import type { Database } from "../db/client.ts";
import { UserError } from "../errors.ts";

// `list`: one page of generations, newest first, with the hybrid context filter in SQL, on
// whichever generations table is in use (genstore's own or the app's).

export interface ListResult {
  rows: GenerationRecord[];
  /** Pass as --after to get the next page; undefined on the last page. */
  next?: string;
}

export async function runList(filters: ListFilters, deps: { db: Database }): Promise<ListResult> {
  const t = await deps.db.generations();
  if (filters.after !== undefined) {
    const exists = await deps.db.query(`SELECT 1 FROM ${t.name} WHERE ${t.col("id")}::text = $1`, filters.after);
    if (exists.length === 0)
      throw new UserError(`Unknown cursor: no generation has id ${filters.after}.`, {
        hint: "Pass the id of the last row of the previous page.",
      });
  }
  const { sql, params } = buildListQuery(t, filters);
  const found = (await deps.db.query(sql, ...params)).map((raw) => t.decode(raw));
  const rows = found.slice(0, filters.limit);
  return { rows, next: found.length > filters.limit ? rows.at(-1)?.id : undefined };
}

// --- For the gallery: counts per tab and one row by id ------------------------------------
// Built from list's own conditions, so a tab's count is exactly the rows list shows for it.

export type ContextCounts = Record<"all" | StorageContext, number>;

/**
 * How many rows match the filters, in all and per context. Every row is in exactly one
 * context under the hybrid rule. The rows are first counted by their operationType column
 * alone (an index-only scan where the column is indexed); only when some hold none of the
 * types are those counted again by their prompt's prefix, which reads each of them. Once
 * `backfill` has set the column everywhere, the counts do not read the table.
 */
export async function countByContext(
  filters: Omit<ListFilters, "context" | "after" | "limit">,
  deps: { db: Database },
): Promise<ContextCounts> {
  const t = await deps.db.generations();
  const params: unknown[] = [];
  const where = filterConditions(t, filters, (value) => `$${params.push(value)}`);
  const op = t.col("operationType");
  const whereSql = (more: string[]) =>
    where.length + more.length > 0 ? `WHERE ${[...where, ...more].join(" AND ")}` : "";
  // One snapshot for both counts, so that the tabs add up to All while rows are written.
  return deps.db.transaction(async (tx) => {
    await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    const counts: ContextCounts = { all: 0, generated: 0, edited: 0, upscaled: 0, videos: 0 };
    let byPrompt = 0;
    const byColumn = await tx.query<{ op: string | null; n: number }>(
      // Grouped by the column itself (its index's order); the cast to text comes after.
      `SELECT op::text AS op, n FROM (SELECT ${op} AS op, count(*)::int AS n FROM ${t.name} ${whereSql([])} GROUP BY 1) AS c`,
      ...params,
    );
    for (const { op: value, n } of byColumn) {
      counts.all += Number(n);
      if (isOperationType(value)) counts[contextForOperation(value)] += Number(n);
      else byPrompt += Number(n);
    }
    if (byPrompt > 0) {
      const byPrefix = await tx.query<{ op: OperationType; n: number }>(
        `SELECT ${operationFromPromptSql(t.col("prompt"))} AS op, count(*)::int AS n FROM ${t.name} ${whereSql([`NOT ${knownOperationSql(op)}`])} GROUP BY 1`,
        ...params,
      );
      for (const { op: operation, n } of byPrefix) counts[contextForOperation(operation)] += Number(n);
    }
    return counts;
  });
}

export async function findGeneration(id: string, deps: { db: Database }): Promise<GenerationRecord | null> {
  const t = await deps.db.generations();
  const [raw] = await deps.db.query(`SELECT ${t.selectList()} FROM ${t.name} WHERE ${t.col("id")}::text = $1`, id);
  return raw === undefined ? null : t.decode(raw);
}
