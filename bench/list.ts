// `list` at 1,000,000 rows of an app's own table (app (b): @@map("generations"), snake_case
// columns, a status enum), attached through genstore.config.json, with the indexes
// `genstore db check` suggests: a filtered first page through genstore's runList (the
// mapped hybrid-rule SQL, rows decoded) next to the same statement as raw SQL through pg,
// in the same run (target: under 100 ms). Needs BENCH_DATABASE_URL (default: the local
// server, database test).
import pg from "pg";
import { buildListQuery, type ListFilters } from "../src/core/list-query.ts";
import { runDbCheck } from "../src/jobs/db.ts";
import { runList } from "../src/jobs/list.ts";
import { APP_CONFIG } from "../tests/support/app-database.ts";
import { benchDatabaseUrl as url, median, seedAppB, withBenchDatabase } from "./support.ts";

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
await withBenchDatabase(
  "list",
  async ({ db }) => {
    const t0 = performance.now();
    await seedAppB(db, rows, { operationType: true });
    const check = await runDbCheck({ db, generations: APP_CONFIG.b });
    for (const index of check.indexes.filter((i) => !i.present))
      await db.query(index.create.replace(" CONCURRENTLY", ""));
    await db.query(`ANALYZE ${(await db.generations()).name}`);
    console.log(
      `list on an attached app table (${check.table}): ${rows.toLocaleString("en-US")} rows and db check's ${check.indexes.filter((i) => !i.present).length} indexes in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    const cases: [string, ListFilters][] = [
      ["first page, no filter", { limit: 50 }],
      ["--context edited", { limit: 50, context: "edited" }],
      ["--context videos --status failed", { limit: 50, context: "videos", statuses: ["failed"] }],
      ["--user user_42 --context upscaled", { limit: 50, userId: "user_42", context: "upscaled" }],
      [
        "--since 30d --status processing",
        { limit: 50, statuses: ["processing"], since: new Date("2026-01-05T00:00:00Z") },
      ],
      ["page 100 of 50 (keyset --after)", { limit: 50, after: "g00995000" }],
    ];
    const raw = new pg.Pool({ connectionString: url });
    const table = await db.generations();
    for (const [name, filters] of cases) {
      const ours = await median(() => runList(filters, { db }));
      const { sql, params } = buildListQuery(table, filters);
      const reference = await median(() => raw.query(sql, params));
      console.log(
        `  ${name.padEnd(40)} genstore ${ours.toFixed(1)} ms   raw SQL ${reference.toFixed(1)} ms   (target < 100 ms)`,
      );
    }
    await raw.end();
  },
  { app: "b" },
);
