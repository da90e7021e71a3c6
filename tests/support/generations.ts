import type { GenerationField, GenerationRecord } from "../../src/core/generation-table.ts";
import type { Database } from "../../src/db/client.ts";

// Tests read and write the generations table through the same mapping genstore uses, so a
// test body runs unchanged on genstore's own table and on an app's attached one. Rows are
// GenerationRecord (Prisma's field names).

export type GenerationWhere = Partial<Record<GenerationField, string | null>>;

function whereSql(t: Awaited<ReturnType<Database["generations"]>>, where: GenerationWhere, params: unknown[]): string {
  const conditions = Object.entries(where).map(([field, value]) => {
    const col = t.col(field as GenerationField);
    if (value === null) return `${col} IS NULL`;
    params.push(field === "status" ? t.statusValue(value as never) : value);
    return `${col}::text = $${params.length}`;
  });
  return conditions.length > 0 ? `WHERE ${conditions.join(" AND ")}` : "";
}

export async function generations(
  db: Database,
  options: { where?: GenerationWhere; orderBy?: GenerationField } = {},
): Promise<GenerationRecord[]> {
  const t = await db.generations();
  const params: unknown[] = [];
  const rows = await db.query(
    `SELECT ${t.selectList()} FROM ${t.name} ${whereSql(t, options.where ?? {}, params)} ORDER BY ${t.col(options.orderBy ?? "createdAt")}, ${t.col("id")}`,
    ...params,
  );
  return rows.map((raw) => t.decode(raw));
}

/** The one row matching `where`; throws when there is none. */
export async function generation(db: Database, where: GenerationWhere): Promise<GenerationRecord> {
  const [row] = await generations(db, { where });
  if (!row) throw new Error(`no generation matches ${JSON.stringify(where)}`);
  return row;
}

export async function countGenerations(db: Database, where: GenerationWhere = {}): Promise<number> {
  const t = await db.generations();
  const params: unknown[] = [];
  const [row] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${t.name} ${whereSql(t, where, params)}`,
    ...params,
  );
  return Number(row?.n ?? 0);
}

let sequence = 0;

/** Inserts rows as the app would: the fields given, with the required ones filled in. */
export async function insertGenerations(db: Database, rows: Partial<GenerationRecord>[]): Promise<void> {
  const t = await db.generations();
  for (const row of rows) {
    const full: Partial<GenerationRecord> = {
      id: `g_${process.pid}_${++sequence}`,
      userId: "u1",
      prompt: "",
      status: "starting",
      createdAt: new Date(),
      updatedAt: new Date(),
      ...row,
    };
    const params: unknown[] = [];
    const param = (value: unknown) => `$${params.push(value)}`;
    const columns: string[] = [];
    const values: string[] = [];
    for (const [field, value] of Object.entries(full) as [GenerationField, unknown][]) {
      if (value === undefined || !t.has(field)) continue;
      columns.push(t.col(field));
      values.push(t.valueSql(field, value, param));
    }
    await db.query(`INSERT INTO ${t.name} (${columns.join(", ")}) VALUES (${values.join(", ")})`, ...params);
  }
}

export async function insertGeneration(db: Database, row: Partial<GenerationRecord>): Promise<GenerationRecord> {
  const id = row.id ?? `g_${process.pid}_${++sequence}`;
  await insertGenerations(db, [{ ...row, id }]);
  return generation(db, { id });
}

export interface KeyMoveEntry {
  sourceKey: string;
  targetKey: string;
  generationId: string | null;
  step: string;
  size: number | null;
  etag: string | null;
  error: string | null;
}

/** migrate-keys' journal (genstore's schema), by source key. */
export async function keyMoves(
  db: Database,
  where: { step?: string[]; sourceKey?: string } = {},
): Promise<KeyMoveEntry[]> {
  const rows = await db.query<KeyMoveEntry>(
    `SELECT "sourceKey", "targetKey", "generationId", "step", "size"::float8 AS "size", "etag", "error"
       FROM "KeyMove"
      WHERE ($1::text[] IS NULL OR "step" = ANY($1::text[])) AND ($2::text IS NULL OR "sourceKey" = $2)
      ORDER BY "sourceKey"`,
    where.step ?? null,
    where.sourceKey ?? null,
  );
  return rows.map((r) => ({ ...r, size: r.size === null ? null : Number(r.size) }));
}

export async function insertKeyMove(
  db: Database,
  entry: Partial<KeyMoveEntry> & { sourceKey: string; targetKey: string },
) {
  await db.query(
    `INSERT INTO "KeyMove" ("sourceKey", "targetKey", "generationId", "step", "size", "etag", "error", "updatedAt")
     VALUES ($1, $2, $3, $4, $5, $6, $7, CURRENT_TIMESTAMP)`,
    entry.sourceKey,
    entry.targetKey,
    entry.generationId ?? null,
    entry.step ?? "planned",
    entry.size ?? null,
    entry.etag ?? null,
    entry.error ?? null,
  );
}

export interface JobCursorEntry {
  name: string;
  cursor: string | null;
  data: unknown;
}

export async function jobCursors(db: Database, name?: string): Promise<JobCursorEntry[]> {
  return db.query<JobCursorEntry>(
    `SELECT "name", "cursor", "data" FROM "JobCursor" WHERE ($1::text IS NULL OR "name" = $1) ORDER BY "name"`,
    name ?? null,
  );
}
