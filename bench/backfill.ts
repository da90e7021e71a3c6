// backfill of N rows (default 1,000,000) on PostgreSQL, next to one hand-written set-based
// UPDATE of the same rows, in the same run.
import { runBackfill } from "../src/jobs/backfill.ts";
import { withBenchDatabase } from "./support.ts";

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const seconds = async (fn: () => Promise<unknown>) => {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
};
await withBenchDatabase("backfill", async (db) => {
  const reset = () =>
    db
      .query(`UPDATE "Generation" SET "operationType" = NULL, "storageContext" = NULL, metadata = '{}'`)
      .then(() => db.query(`VACUUM ANALYZE "Generation"`));
  await db.query(`
    INSERT INTO "Generation" (id, "userId", prompt, "createdAt", "updatedAt")
    SELECT 'g' || lpad(i::text, 8, '0'), 'user_' || (i % 1000),
           (ARRAY['[EDITED] ', '[UPSCALED] ', '[VIDEO] ', '', ' [EDITED] ', ''])[1 + i % 6] || 'prompt ' || i,
           timestamp '2026-01-01' + (i || ' seconds')::interval, now()
    FROM generate_series(1, ${rows}) AS i`);
  await db.query(`VACUUM ANALYZE "Generation"`);

  const ours = await seconds(() => runBackfill({}, { db }));
  await reset();
  // The reference: the same work as one statement, written by hand.
  const reference = await seconds(() =>
    db.query(`UPDATE "Generation" SET
      "operationType" = CASE WHEN ltrim(prompt) LIKE '[EDITED]%' THEN 'edit' WHEN ltrim(prompt) LIKE '[UPSCALED]%' THEN 'upscale' WHEN ltrim(prompt) LIKE '[VIDEO]%' THEN 'video' ELSE 'generation' END,
      "storageContext" = CASE WHEN ltrim(prompt) LIKE '[EDITED]%' THEN 'edited' WHEN ltrim(prompt) LIKE '[UPSCALED]%' THEN 'upscaled' WHEN ltrim(prompt) LIKE '[VIDEO]%' THEN 'videos' ELSE 'generated' END,
      metadata = COALESCE(metadata, '{}'::jsonb) || '{"detectedBy":"prompt-prefix"}', "updatedAt" = now()
      WHERE "operationType" IS NULL`),
  );
  const rate = (n: number, s: number) => Math.round(n / s).toLocaleString("en-US");
  console.log(`backfill of ${rows.toLocaleString("en-US")} rows on PostgreSQL:`);
  console.log(`  genstore backfill (batches of 10,000)   ${ours.toFixed(2)} s  ${rate(rows, ours)} rows/s`);
  console.log(
    `  one hand-written UPDATE (reference)     ${reference.toFixed(2)} s  ${rate(rows, reference)} rows/s   ratio ${(ours / reference).toFixed(2)}x (target ≤ 1.5x)`,
  );
});
