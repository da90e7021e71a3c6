import { hybridOperationConditionSql, operationForContext, type StorageContext } from "./operation.ts";
import type { Status } from "./status.ts";

// `list` as one keyset-paginated SQL query: newest first by (createdAt, id), so a page
// costs the same at row 1,000,000 as at row 1 and the indexes on (…, createdAt, id) serve it.

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

export function buildListQuery(filters: ListFilters): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const where: string[] = [];
  if (filters.userId !== undefined) where.push(`"userId" = ${param(filters.userId)}`);
  if (filters.context !== undefined) where.push(hybridOperationConditionSql(operationForContext(filters.context)));
  if (filters.statuses?.length) where.push(`"status" = ANY(${param(filters.statuses)}::text[])`);
  if (filters.since) where.push(`"createdAt" >= ${param(filters.since.toISOString())}::timestamp`);
  if (filters.until) where.push(`"createdAt" < ${param(filters.until.toISOString())}::timestamp`);
  if (filters.after !== undefined) {
    where.push(
      `("createdAt", "id") < (SELECT "createdAt", "id" FROM "Generation" WHERE "id" = ${param(filters.after)})`,
    );
  }
  const sql = [
    `SELECT "id" FROM "Generation"`,
    where.length > 0 ? `WHERE ${where.join(" AND ")}` : "",
    `ORDER BY "createdAt" DESC, "id" DESC`,
    // One more than asked, to know whether there is a next page.
    `LIMIT ${param(filters.limit + 1)}`,
  ]
    .filter(Boolean)
    .join(" ");
  return { sql, params };
}
