import { buildListQuery, type ListFilters } from "../core/list-query.ts";
import type { Database } from "../db/client.ts";
import { UserError } from "../errors.ts";
import type { Generation } from "../generated/prisma/client.ts";

// `list`: one page of generations, newest first, with the hybrid context filter in SQL.

export interface ListResult {
  rows: Generation[];
  /** Pass as --after to get the next page; undefined on the last page. */
  next?: string;
}

export async function runList(filters: ListFilters, deps: { db: Database }): Promise<ListResult> {
  if (filters.after !== undefined) {
    const exists = await deps.db.prisma.generation.findUnique({ where: { id: filters.after }, select: { id: true } });
    if (!exists)
      throw new UserError(`Unknown cursor: no generation has id ${filters.after}.`, {
        hint: "Pass the id of the last row of the previous page.",
      });
  }
  const { sql, params } = buildListQuery(filters);
  const ids = (await deps.db.query<{ id: string }>(sql, ...params)).map((r) => r.id);
  const page = ids.slice(0, filters.limit);
  const found = await deps.db.prisma.generation.findMany({ where: { id: { in: page } } });
  const byId = new Map(found.map((row) => [row.id, row]));
  const rows = page.map((id) => byId.get(id)).filter((row): row is Generation => row !== undefined);
  return { rows, next: ids.length > filters.limit ? page.at(-1) : undefined };
}
