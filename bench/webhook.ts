// The webhook receiver's ack path: deliveries acked per second and p50/p99 ack latency at
// a fixed concurrency, for genstore's server (signature check + durable INSERT into
// PostgreSQL before the 200; the worker is off, so only the ack path is measured) next to
// a bare node:http server that only verifies the signature, in the same run. The load
// generator runs in a worker thread (keep-alive agent, pre-signed deliveries).
// Needs BENCH_DATABASE_URL (default: the local server, database test).
// BENCH_DELIVERIES (default 10000) and BENCH_CONCURRENCY (default 32) change the load.
import { randomBytes } from "node:crypto";
import http from "node:http";
import os from "node:os";
import type { AddressInfo } from "node:net";
import { Worker } from "node:worker_threads";
import { createDeliveryQueue } from "../src/webhook/queue.ts";
import { createWebhookServer } from "../src/webhook/http-server.ts";
import { signWebhook, verifyWebhook } from "../src/webhook/verify.ts";
import { samplePrediction } from "../tests/support/webhook-deliveries.ts";
import { benchDatabaseUrl, withBenchDatabase } from "./support.ts";

const deliveries = Number(process.env.BENCH_DELIVERIES ?? 10_000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32);
const warmup = 300;
const secret = `whsec_${randomBytes(24).toString("base64")}`;

interface Signed {
  body: string;
  headers: Record<string, string>;
}

/** A realistic completed prediction (about 1.3 kB), each with its own webhook-id. */
function presign(count: number, tag: string): Signed[] {
  const now = Math.floor(Date.now() / 1000);
  return Array.from({ length: count }, (_, i) => {
    const id = `p${tag}${i.toString(36).padStart(6, "0")}`;
    const body = JSON.stringify(
      samplePrediction({
        id,
        input: { prompt: "[EDITED] a red fox in snow, golden hour, 35mm", aspect_ratio: "1:1", num_outputs: 1 },
        logs: "Using seed: 1234\nrunning quantized prediction\n100%|██████████| 4/4 [00:01<00:00,  2.95it/s]\n",
        output: [`https://replicate.delivery/xezq/${randomBytes(16).toString("hex")}/out-0.webp`],
        urls: {
          get: `https://api.replicate.com/v1/predictions/${id}`,
          cancel: `https://api.replicate.com/v1/predictions/${id}/cancel`,
          web: `https://replicate.com/p/${id}`,
        },
      }),
    );
    const webhookId = `msg_${tag}_${i}`;
    return {
      body,
      headers: {
        "content-type": "application/json",
        "webhook-id": webhookId,
        "webhook-timestamp": String(now),
        "webhook-signature": signWebhook({ id: webhookId, timestamp: now, body, secret }),
      },
    };
  });
}

// Plain JavaScript, evaluated in a worker thread (no TypeScript loader needed there).
const loadGenerator = `
const http = require("node:http");
const { parentPort, workerData } = require("node:worker_threads");
const { url, items, concurrency } = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
function send(item) {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const req = http.request(url, { method: "POST", agent, headers: { ...item.headers, "content-length": Buffer.byteLength(item.body) } }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, ms: performance.now() - start }));
    });
    req.on("error", reject);
    req.end(item.body);
  });
}
(async () => {
  let next = 0;
  const latencies = [];
  let failures = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const item = items[next++];
      const r = await send(item);
      if (r.status !== 200) failures++;
      latencies.push(r.ms);
    }
  }));
  const elapsed = performance.now() - started;
  agent.destroy();
  parentPort.postMessage({ elapsed, latencies, failures });
})();
`;

interface Run {
  elapsed: number;
  latencies: number[];
  failures: number;
}

function load(url: string, items: Signed[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(loadGenerator, { eval: true, workerData: { url, items, concurrency } });
    worker.once("message", resolve);
    worker.once("error", reject);
  });
}

function summarize(name: string, run: Run & { cpuMs: number }): { rate: number; p50: number; p99: number } {
  const sorted = [...run.latencies].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const rate = run.latencies.length / (run.elapsed / 1000);
  const result = { rate, p50: at(0.5), p99: at(0.99) };
  console.log(
    `  ${name.padEnd(44)} ${Math.round(rate).toLocaleString("en-US").padStart(6)} acks/s   p50 ${result.p50.toFixed(1).padStart(5)} ms   p99 ${result.p99.toFixed(1).padStart(5)} ms   cpu ${Math.round((run.cpuMs * 1000) / run.latencies.length)} µs/ack${run.failures ? `   ${run.failures} non-200!` : ""}`,
  );
  return result;
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/webhooks/replicate`;
}

/** A load run, with the CPU time this process spent meanwhile (both servers and the load generator share it). */
async function measure(url: string, items: Signed[]): Promise<Run & { cpuMs: number }> {
  const before = process.cpuUsage();
  const run = await load(url, items);
  const used = process.cpuUsage(before);
  return { ...run, cpuMs: (used.user + used.system) / 1000 };
}

await withBenchDatabase("webhook", async ({ db }) => {
  const [server] = await db.query<{ server_version: string }>("SHOW server_version");
  console.log(
    `webhook: ${deliveries.toLocaleString("en-US")} signed deliveries, ${concurrency} in flight, keep-alive; worker off (ack path only)`,
  );
  console.log(
    `  command: npm run bench -- webhook (BENCH_DELIVERIES=${deliveries} BENCH_CONCURRENCY=${concurrency}); ${warmup} warm-up deliveries to each server first`,
  );
  console.log(
    `  setup: both servers on this process's main thread, load generator in a worker thread; node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0]!.toFixed(2)}; PostgreSQL ${server!.server_version} at ${new URL(benchDatabaseUrl).host}`,
  );
  console.log(
    `  cpu: this process's CPU time per ack during the run (servers + load generator; PostgreSQL's own is not counted)`,
  );

  // The reference: node:http, read the body, verify the signature, 200. Nothing stored.
  const bare = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const verified = verifyWebhook({ body: Buffer.concat(chunks).toString("utf8"), headers: req.headers, secret });
      res.writeHead(verified.ok ? 200 : 401, { "content-type": "application/json" }).end('{"ok":true}\n');
    });
  });
  const bareUrl = await listen(bare);

  const queue = createDeliveryQueue(db);
  const ours = createWebhookServer({ queue, secret });
  const oursUrl = `${await ours.listen(0, "127.0.0.1")}/api/webhooks/replicate`;

  await load(bareUrl, presign(warmup, "wb"));
  await load(oursUrl, presign(warmup, "wg"));
  const reference = summarize("bare node:http, verify only", await measure(bareUrl, presign(deliveries, "b")));
  const genstore = summarize(
    "genstore serve-webhook (verify + INSERT)",
    await measure(oursUrl, presign(deliveries, "g")),
  );

  const n = (await db.query<{ n: string }>(`SELECT count(*) AS n FROM "WebhookDelivery"`))[0]!.n;
  console.log(
    `  stored: ${Number(n).toLocaleString("en-US")} deliveries (expected ${(deliveries + warmup).toLocaleString("en-US")})`,
  );
  const ratio = genstore.rate / reference.rate;
  console.log(
    `  genstore/bare throughput ${(ratio * 100).toFixed(0)}% (target ≥ 50%: ${ratio >= 0.5 ? "met" : "NOT met"}); p99 ${genstore.p99.toFixed(1)} ms (target < 50 ms: ${genstore.p99 < 50 ? "met" : "NOT met"})`,
  );
  await ours.close();
  await new Promise<void>((resolve) => bare.close(() => resolve()));
});
