// `list` at 1,000,000 rows on PostgreSQL: a filtered first page through genstore's
// runList (Prisma + the hybrid-rule SQL) next to the same id query as raw SQL through pg,
// in the same run. Needs BENCH_DATABASE_URL (default: the local server, database test).
import pg from "pg";
import { runList } from "../src/jobs/list.ts";
import { buildListQuery, type ListFilters } from "../src/core/list-query.ts";
import { benchDatabaseUrl as url, withBenchDatabase } from "./support.ts";

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
await withBenchDatabase("list", async (db, schema) => {
  const t0 = performance.now();
  // 1,000 users; a quarter of the rows are old (no operationType), the rest have the column.
  await db.query(`
    INSERT INTO "Generation" (id, "userId", prompt, status, "operationType", "storageContext", "createdAt", "updatedAt")
    SELECT 'g' || lpad(i::text, 8, '0'), 'user_' || (i % 1000),
           (ARRAY['[EDITED] ', '[UPSCALED] ', '[VIDEO] ', '', '', ''])[1 + i % 6] || 'prompt ' || i,
           (ARRAY['succeeded','succeeded','succeeded','failed','processing'])[1 + i % 5],
           CASE WHEN i % 4 = 0 THEN NULL ELSE (ARRAY['edit','upscale','video','generation','generation','generation'])[1 + i % 6] END,
           CASE WHEN i % 4 = 0 THEN NULL ELSE (ARRAY['edited','upscaled','videos','generated','generated','generated'])[1 + i % 6] END,
           timestamp '2026-01-01' + (i || ' seconds')::interval, now()
    FROM generate_series(1, ${rows}) AS i`);
  await db.query(`ANALYZE "Generation"`);
  console.log(`list: seeded ${rows.toLocaleString("en-US")} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const cases: [string, ListFilters][] = [
    ["first page, no filter", { limit: 50 }],
    ["--context edited", { limit: 50, context: "edited" }],
    ["--context videos --status failed", { limit: 50, context: "videos", statuses: ["failed"] }],
    ["--user user_42 --context upscaled", { limit: 50, userId: "user_42", context: "upscaled" }],
    [
      "--since 30d --status processing",
      { limit: 50, statuses: ["processing"], since: new Date("2026-01-05T00:00:00Z") },
    ],
  ];
  const raw = new pg.Pool({ connectionString: url, options: `-c search_path="${schema}"` });
  for (const [name, filters] of cases) {
    const ours = await median(() => runList(filters, { db }));
    const { sql, params } = buildListQuery(await db.generations(), filters);
    const reference = await median(() => raw.query(sql, params));
    console.log(
      `  ${name.padEnd(40)} genstore ${ours.toFixed(1)} ms   raw SQL ${reference.toFixed(1)} ms   (target < 100 ms)`,
    );
  }
  await raw.end();
});

async function median(fn: () => Promise<unknown>, runs = 21): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(runs / 2)]!;
}
