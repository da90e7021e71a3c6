import type { GenerationTable } from "./generation-table.ts";
import { hybridOperationConditionSql, operationForContext, type StorageContext } from "./operation.ts";
import type { Status } from "./status.ts";

// `list` as one keyset-paginated SQL query: newest first by (createdAt, id), so a page
// costs the same at row 1,000,000 as at row 1 and the indexes on (…, createdAt, id) serve
// it (`genstore db check` prints them for an app's table). The same filters count the rows
// per context (the gallery's tabs).

export interface ListFilters {
  userId?: string;
  context?: StorageContext;
  statuses?: Status[];
  since?: Date;
  until?: Date;
  /** The id of the last row of the previous page (as Stripe's starting_after). */
  after?: string;
  limit: number;
}

interface Built {
  sql: string;
  params: unknown[];
}

/** The WHERE conditions of the filters (the context aside), in the table's names and vocabulary. */
export function filterConditions(
  t: GenerationTable,
  filters: Omit<ListFilters, "limit" | "after" | "context">,
  param: (value: unknown) => string,
): string[] {
  const where: string[] = [];
  if (filters.userId !== undefined) where.push(`${t.col("userId")} = ${param(filters.userId)}`);
  if (filters.statuses?.length) where.push(t.statusInSql(filters.statuses));
  if (filters.since) where.push(`${t.col("createdAt")} >= ${t.timestampParam("createdAt", filters.since, param)}`);
  if (filters.until) where.push(`${t.col("createdAt")} < ${t.timestampParam("createdAt", filters.until, param)}`);
  return where;
}

/** The hybrid rule on the table's columns: operationType where set, else the prompt's prefix. */
export function contextConditionSql(t: GenerationTable, context: StorageContext): string {
  return hybridOperationConditionSql(operationForContext(context), {
    operationType: t.col("operationType"),
    prompt: t.col("prompt"),
  });
}

export function buildListQuery(t: GenerationTable, filters: ListFilters): Built {
  const params: unknown[] = [];
  const param = (value: unknown) => `$${params.push(value)}`;
  const where = filterConditions(t, filters, param);
  if (filters.context !== undefined) where.push(contextConditionSql(t, filters.context));
  if (filters.after !== undefined) {
    where.push(
      `(${t.col("createdAt")}, ${t.col("id")}) < (SELECT ${t.col("createdAt")}, ${t.col("id")} FROM ${t.name} WHERE ${t.col("id")}::text = ${param(filters.after)})`,
    );
  }
  const sql = [
    `SELECT ${t.selectList()} FROM ${t.name}`,
    where.length > 0 ? `WHERE ${where.join(" AND ")}` : "",
    // Qualified: a bare name in ORDER BY means the output column of that name, which the
    // select list converts (AT TIME ZONE, ::text), and no index can then serve the order.
    `ORDER BY ${t.col("createdAt", t.name)} DESC, ${t.col("id", t.name)} DESC`,
    // One more than asked, to know whether there is a next page.
    `LIMIT ${param(filters.limit + 1)}`,
  ]
    .filter(Boolean)
    .join(" ");
  return { sql, params };
}
