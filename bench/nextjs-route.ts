// The webhook route of examples/nextjs under `next start`, on PostgreSQL (TEST_DATABASE_URL)
// or the embedded database: latency of the first request (which opens genstore) and of the
// following ones, and the server's resident memory as deliveries add up (does it keep
// growing?). Each delivery is a new prediction with one PNG output, signed by svix.
//
//   npm run bench -- nextjs-route                    # packs, installs and builds the example first
//   BENCH_APP=/tmp/app npx tsx bench/nextjs-route.ts # an example already installed and built
//   BENCH_DELIVERIES=1000 (default 1000)
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { buildApp, installExample, packTarball, startServer, appCli } from "../tests/support/next-app.ts";
import { startOutputServer } from "../tests/support/output-server.ts";
import { newSecret, samplePrediction, svixSigned } from "../tests/support/webhook-deliveries.ts";

const deliveries = Number(process.env.BENCH_DELIVERIES ?? 1000);
const databaseUrl = process.env.TEST_DATABASE_URL;
const work = await mkdtemp(path.join(os.tmpdir(), "genstore-bench-next-"));
let app = process.env.BENCH_APP;
if (!app) {
  app = await installExample(await packTarball(work));
  await buildApp(app, "turbopack");
}
const outputs = await startOutputServer({ lifetimeMs: 60 * 60_000 });
const secret = newSecret();
const home = path.join(work, "home");
let schema: string | undefined;
const env: Record<string, string> = {
  GENSTORE_HOME: home,
  GENSTORE_OUTPUT_HOSTS: outputs.hostEntry,
  REPLICATE_WEBHOOK_SECRET: secret,
};
if (databaseUrl) {
  schema = `genstore_bench_next_${process.pid}`;
  const url = new URL(databaseUrl);
  url.searchParams.set("schema", schema);
  env.DATABASE_URL = url.toString();
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.end();
  const migrated = await appCli(app, ["db", "migrate"], env);
  if (migrated.code !== 0) throw new Error(migrated.stderr);
}

const server = await startServer(app, "next start", env);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))![1]) / 1024;
const send = async (i: number) => {
  const prediction = samplePrediction({ output: [outputs.url(`/png/out-${i}.png`)] });
  const signed = svixSigned(JSON.stringify(prediction), secret);
  const started = performance.now();
  const response = await fetch(`${server.url}/api/webhooks/replicate?userId=bench`, {
    method: "POST",
    headers: signed.headers,
    body: signed.body,
  });
  await response.text();
  if (response.status !== 200) throw new Error(`delivery ${i}: ${response.status}`);
  return performance.now() - started;
};

try {
  console.log(
    `nextjs-route: ${deliveries} deliveries to next start on ${databaseUrl ? "PostgreSQL" : "the embedded database"}`,
  );
  console.log(`  RSS before the first request: ${rss().toFixed(0)} MB`);
  const first = await send(0);
  console.log(`  first request (opens genstore): ${first.toFixed(0)} ms; RSS ${rss().toFixed(0)} MB`);
  const times: number[] = [];
  for (let i = 1; i < deliveries; i++) {
    times.push(await send(i));
    if (i % 100 === 0 || i === deliveries - 1) {
      const recent = times.slice(-99).sort((a, b) => a - b);
      const at = (q: number) => recent[Math.min(recent.length - 1, Math.floor(q * recent.length))]!.toFixed(1);
      console.log(`  after ${i + 1}: p50 ${at(0.5)} ms, p95 ${at(0.95)} ms (last 99); RSS ${rss().toFixed(0)} MB`);
    }
  }
  // Let the background ingestion (after()) finish, then read memory once more.
  for (let waited = 0; outputs.count("/png/") < deliveries && waited < 120; waited++)
    await new Promise((resolve) => setTimeout(resolve, 1000));
  await new Promise((resolve) => setTimeout(resolve, 5000));
  console.log(`  ${outputs.count("/png/")} outputs downloaded; idle RSS ${rss().toFixed(0)} MB`);
} finally {
  await server.stop();
  await outputs.close();
  if (schema) {
    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
  await rm(work, { recursive: true, force: true });
  if (!process.env.BENCH_APP) await rm(app, { recursive: true, force: true });
}
