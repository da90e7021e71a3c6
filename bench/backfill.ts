// backfill of 1,000,000 rows of an app's own table (app (b): @@map("generations"),
// snake_case columns, a status enum), attached through genstore.config.json: the real
// binary, `genstore backfill` (batches of 10,000, each its own transaction with its cursor),
// as a whole process, next to one hand-written set-based UPDATE of the same rows through
// pg, in the same run (target: at most 1.5x). Needs BENCH_DATABASE_URL (default: the local
// server, database test).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { APP_CONFIG } from "../tests/support/app-database.ts";
import { cleanEnv } from "../tests/support/cli.ts";
import { seedAppB, withBenchDatabase } from "./support.ts";

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const seconds = async (fn: () => unknown) => {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
};

await withBenchDatabase(
  "backfill",
  async ({ db, env }) => {
    const table = (await db.generations()).name;
    const reset = async () => {
      await db.query(`UPDATE ${table} SET operation_type = NULL, storage_context = NULL, metadata = '{}'`);
      await db.query(`VACUUM ANALYZE ${table}`);
    };
    await seedAppB(db, rows, { operationType: false });
    const dir = mkdtempSync(path.join(os.tmpdir(), "genstore-bench-backfill-"));
    const configFile = path.join(dir, "genstore.config.json");
    writeFileSync(configFile, JSON.stringify({ generations: APP_CONFIG.b }));
    // Both runs start from the same state: the rows rewritten once and vacuumed (a freshly
    // inserted table would make the first run also set every tuple's hint bits).
    await reset();

    const ours = await seconds(() =>
      execFileSync(process.execPath, ["bin/genstore", "backfill", "--json"], {
        env: cleanEnv({ ...env, GENSTORE_CONFIG: configFile, GENSTORE_HOME: dir }),
        stdio: ["ignore", "ignore", "inherit"],
      }),
    );
    const [{ n }] = (await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${table} WHERE operation_type IS NULL`,
    )) as [{ n: number }];
    if (n !== 0) throw new Error(`genstore backfill left ${n} rows without operation_type`);
    await reset();
    // The reference: the same work as one statement, written by hand.
    const reference = await seconds(() =>
      db.query(`UPDATE ${table} SET
        operation_type = CASE WHEN ltrim(prompt) LIKE '[EDITED]%' THEN 'edit' WHEN ltrim(prompt) LIKE '[UPSCALED]%' THEN 'upscale' WHEN ltrim(prompt) LIKE '[VIDEO]%' THEN 'video' ELSE 'generation' END,
        storage_context = CASE WHEN ltrim(prompt) LIKE '[EDITED]%' THEN 'edited' WHEN ltrim(prompt) LIKE '[UPSCALED]%' THEN 'upscaled' WHEN ltrim(prompt) LIKE '[VIDEO]%' THEN 'videos' ELSE 'generated' END,
        metadata = COALESCE(metadata, '{}'::jsonb) || '{"detectedBy":"prompt-prefix"}', updated_at = now() AT TIME ZONE 'UTC'
        WHERE operation_type IS NULL`),
    );
    rmSync(dir, { recursive: true, force: true });
    const rate = (n: number, s: number) => Math.round(n / s).toLocaleString("en-US");
    console.log(`backfill of ${rows.toLocaleString("en-US")} rows of an attached app table (${table}) on PostgreSQL:`);
    console.log(
      `  genstore backfill, the binary (batches of 10,000)   ${ours.toFixed(2)} s  ${rate(rows, ours)} rows/s`,
    );
    console.log(
      `  one hand-written UPDATE (reference)                 ${reference.toFixed(2)} s  ${rate(rows, reference)} rows/s   ratio ${(ours / reference).toFixed(2)}x (target ≤ 1.5x)`,
    );
  },
  { app: "b" },
);
