import type { GenerationRecord } from "../core/generation-table.ts";
import { buildListQuery, type ListFilters } from "../core/list-query.ts";
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
