import type { GenerationRecord } from "../core/generation-table.ts";
import { buildListQuery, contextConditionSql, filterConditions, type ListFilters } from "../core/list-query.ts";
import { STORAGE_CONTEXTS, type StorageContext } from "../core/operation.ts";
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
 * How many rows match the filters, in all and per context, in one scan. Every row is in
 * exactly one context under the hybrid rule, so `generated` (the costliest condition: no
 * prefix at all) is what the others leave.
 */
export async function countByContext(
  filters: Omit<ListFilters, "context" | "after" | "limit">,
  deps: { db: Database },
): Promise<ContextCounts> {
  const t = await deps.db.generations();
  const params: unknown[] = [];
  const where = filterConditions(t, filters, (value) => `$${params.push(value)}`);
  const others = STORAGE_CONTEXTS.filter((context) => context !== "generated");
  const perContext = others.map(
    (context) => `count(*) FILTER (WHERE ${contextConditionSql(t, context)})::int AS "${context}"`,
  );
  const sql = `SELECT count(*)::int AS "all", ${perContext.join(", ")} FROM ${t.name}${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""}`;
  const [row] = await deps.db.query<Omit<ContextCounts, "generated">>(sql, ...params);
  return { ...row!, generated: others.reduce((left, context) => left - row![context], row!.all) };
}

export async function findGeneration(id: string, deps: { db: Database }): Promise<GenerationRecord | null> {
  const t = await deps.db.generations();
  const [raw] = await deps.db.query(`SELECT ${t.selectList()} FROM ${t.name} WHERE ${t.col("id")}::text = $1`, id);
  return raw === undefined ? null : t.decode(raw);
}
