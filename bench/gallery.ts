// `gallery` at 1,000,000 rows on PostgreSQL: the first page of 60 items and its counts per
// tab, as the page asks for them (both at once), measured by the server (Server-Timing):
// right after the server listens, then per view on the server as operators run it (counts
// kept for 10 s) beside one that counts at every ask (what a view's first ask costs), next
// to list's query for the same page (runList) and a bare count(*) of the same rows, in the
// same run. Local storage holds the objects of the newest rows, so the page's storage
// checks find real files. Needs BENCH_DATABASE_URL (default: the local server).
//
//   npm run bench -- gallery            BENCH_ROWS=100000 BENCH_RUNS=5 for a quick look
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { ListFilters } from "../src/core/list-query.ts";
import { filterConditions } from "../src/core/list-query.ts";
import { operationFromPromptSql } from "../src/core/operation.ts";
import { parseFilters, parseTab } from "../src/gallery/request.ts";
import { createGalleryServer } from "../src/gallery/server.ts";
import { runList } from "../src/jobs/list.ts";
import { createLocalStorage } from "../src/storage/local.ts";
import { median, withBenchDatabase } from "./support.ts";

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const runs = Number(process.env.BENCH_RUNS ?? 11);
const PAGE = 60;
const ms = (value: number) => `${value.toFixed(1).padStart(6)} ms`;
const STORED = 600;

await withBenchDatabase("gallery", async ({ db }) => {
  const table = (await db.generations()).name;
  const t0 = performance.now();
  // As bench/list.ts: 1,000 users, a quarter of the rows old (no operationType), the rest
  // with the column; here each row also lists its output and thumbnail keys.
  await db.query(`
    INSERT INTO ${table} (id, "userId", prompt, status, "operationType", "storageContext", "storageKeys", metadata, "createdAt", "updatedAt")
    SELECT id, "userId", prompt, status, op, ctx,
           ARRAY[jsonb_build_object('key', c || '/' || "userId" || '/' || id || '_0.png', 'size', 400000, 'kind', 'output', 'contentType', 'image/png', 'etag', md5(id)),
                 jsonb_build_object('key', 'thumbnails/' || c || '/' || "userId" || '/' || id || '_0.webp', 'size', 20000, 'kind', 'thumbnail', 'contentType', 'image/webp', 'etag', md5(id || 't'))],
           jsonb_build_object('model', 'black-forest-labs/flux-schnell', 'userIdSource', 'webhook-query'),
           created, now()
    FROM (
      SELECT 'g' || lpad(i::text, 8, '0') AS id, 'user_' || (i % 1000) AS "userId",
             (ARRAY['[EDITED] ', '[UPSCALED] ', '[VIDEO] ', '', '', ''])[1 + i % 6] || 'prompt ' || i AS prompt,
             (ARRAY['succeeded','succeeded','succeeded','failed','processing'])[1 + i % 5] AS status,
             CASE WHEN i % 4 = 0 THEN NULL ELSE (ARRAY['edit','upscale','video','generation','generation','generation'])[1 + i % 6] END AS op,
             CASE WHEN i % 4 = 0 THEN NULL ELSE (ARRAY['edited','upscaled','videos','generated','generated','generated'])[1 + i % 6] END AS ctx,
             (ARRAY['edited','upscaled','videos','generated','generated','generated'])[1 + i % 6] AS c,
             timestamp '2026-01-01' + (i || ' seconds')::interval AS created
      FROM generate_series(1, ${rows}) AS i
    ) AS seed`);
  await db.query(`VACUUM ANALYZE ${table}`);
  const root = await mkdtemp(path.join(os.tmpdir(), "genstore-bench-gallery-"));
  const storage = createLocalStorage(root);
  const newest = await db.query<{ storageKeys: { key: string }[] }>(
    `SELECT "storageKeys" FROM ${table} ORDER BY "createdAt" DESC LIMIT ${STORED}`,
  );
  for (const row of newest) for (const { key } of row.storageKeys) await storage.put(key, randomBytes(2048));
  console.log(
    `gallery: seeded ${rows.toLocaleString("en-US")} rows (objects for the newest ${STORED}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  // Two servers on the same rows: one as operators run it (counts kept for 10 s, the first
  // ones started when it listens) and one that counts at every ask (countsMaxAgeMs 0), which
  // is what a count costs whenever a filter is asked for the first time.
  const listenedAt = performance.now();
  const gallery = await createGalleryServer({ db, storage, pageSize: PAGE });
  const base = await gallery.listen(0, "127.0.0.1");
  const counting = await createGalleryServer({ db, storage, pageSize: PAGE, countsMaxAgeMs: 0 });
  const countingBase = await counting.listen(0, "127.0.0.1");
  /** Server-Timing's durations by name (db, storage). */
  const serverTiming = (response: Response): Record<string, number> =>
    Object.fromEntries(
      [...(response.headers.get("server-timing") ?? "").matchAll(/(\w+);dur=([\d.]+)/g)].map((m) => [
        m[1]!,
        Number(m[2]),
      ]),
    );
  /** The first page and its counts at once, as the page asks for them; server time of each. */
  async function ask(server: string, params: URLSearchParams) {
    const [page, counts] = await Promise.all([
      fetch(`${server}/api/generations?${params}`),
      fetch(`${server}/api/counts?${params}`),
    ]);
    await Promise.all([page.arrayBuffer(), counts.arrayBuffer()]);
    if (!page.ok || !counts.ok) throw new Error(`${params}: ${page.status} ${counts.status}`);
    const { db: pageDb = 0, storage: pageStorage = 0 } = serverTiming(page);
    const { db: countsDb = 0 } = serverTiming(counts);
    // Asked at once, they answer when the slower one does.
    return { pageDb, pageStorage, counts: countsDb, both: Math.max(pageDb + pageStorage, countsDb) };
  }
  // An operator opens the printed URL at once: the counts started at listen are still running.
  const atStart = await ask(base, new URLSearchParams());
  console.log(
    `  first ask right after listen (All): page+counts ${ms(atStart.both)} (counts started at listen, in ${ms(performance.now() - listenedAt)} with the server's start)`,
  );

  const cases: [string, string][] = [
    ["All (no filter)", ""],
    ["Edited", "tab=edited"],
    ["Videos, status failed", "tab=videos&status=failed"],
    ["Upscaled, user user_42", "tab=upscaled&user=user_42"],
    ["All, last 30 days", "since=2026-01-05"],
  ];
  const node = process.versions.node;
  const [load1] = os.loadavg();
  console.log(
    `  ${os.cpus().length} CPUs, load average ${load1!.toFixed(1)}, node ${node}, median of ${runs} runs; server time from Server-Timing`,
  );
  async function measure(name: string, query: string) {
    const params = new URLSearchParams(query);
    const kept = { pageDb: [] as number[], pageStorage: [] as number[], both: [] as number[] };
    const counted: number[] = [];
    await median(async () => {
      const timing = await ask(base, params);
      kept.pageDb.push(timing.pageDb);
      kept.pageStorage.push(timing.pageStorage);
      kept.both.push(timing.both);
      counted.push((await ask(countingBase, params)).counts);
    }, runs);
    const filters = parseFilters(params);
    const tab = parseTab(params);
    if (!filters.ok || !tab.ok) throw new Error(`bad case ${name}`);
    const listFilters: ListFilters = { ...filters.value, context: tab.value, limit: PAGE };
    const list = await median(() => runList(listFilters, { db }), runs);
    const countParams: unknown[] = [];
    const where = filterConditions(await db.generations(), filters.value, (value) => `$${countParams.push(value)}`);
    const bare = await median(
      () =>
        db.query(`SELECT count(*) FROM ${table}${where.length ? ` WHERE ${where.join(" AND ")}` : ""}`, ...countParams),
      runs,
    );
    // The first call warmed up (and, on the kept server, counted): its figures are left out.
    const mid = (values: number[]) => values.slice(1).sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)]!;
    console.log(
      [
        `  ${name.padEnd(24)}`,
        `page+counts ${ms(mid(kept.both))} (target < 300)`,
        `page: rows ${ms(mid(kept.pageDb))} + storage checks ${ms(mid(kept.pageStorage))}`,
        `counting at every ask ${ms(mid(counted))}`,
        `| list's runList ${ms(list)}`,
        `bare count(*) ${ms(bare)}`,
      ].join("   "),
    );
  }
  for (const [name, query] of cases) await measure(name, query);
  // The same after `genstore backfill` has given every old row its operationType: the counts
  // then come from the column alone (no row's prompt to read).
  const t = await db.generations();
  await db.query(
    `UPDATE ${table} SET "operationType" = ${operationFromPromptSql(t.col("prompt"))} WHERE "operationType" IS NULL`,
  );
  await db.query(`VACUUM ANALYZE ${table}`);
  console.log("  after backfill (every row has its operationType):");
  for (const [name, query] of cases) await measure(name, query);
  await gallery.close();
  await counting.close();
  await rm(root, { recursive: true, force: true });
});
