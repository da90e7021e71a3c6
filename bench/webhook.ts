// The webhook receiver as operators run it: the real binary, `genstore serve-webhook` with
// its worker on, on PostgreSQL, driven by `wrk` (one thread, 32 connections) with a Lua
// script that sends pre-signed, distinct deliveries (bench/webhook.lua). Beside it, in the
// same run, a bare node:http server that only verifies the signature with standardwebhooks
// (bench/webhook-bare.mjs), each in its own process.
//
// Scenarios (BENCH_SCENARIOS, comma-separated, default all):
//   burst      8 s as fast as acks come, every delivery a ~1.1 kB `processing` one for its own
//              prediction (input.user_id): ack req/s, p50/p99 against the bare server, the
//              worker's drain rate, and the time to empty the queue once the load stops;
//   split      the burst's load to `serve-webhook --no-worker` (acks only), then `genstore
//              worker` alone drains what it stored: each half's rate and CPU a delivery;
//   sustained  60 s (BENCH_SUSTAIN_S) paced at 80% of the burst's ack rate (BENCH_SUSTAIN_RATE
//              overrides): p99 while the worker works, and whether the queue empties within
//              10 s of the load stopping;
//   drain      the worker alone: BENCH_DRAIN_BACKLOG (default 40,000) distinct `processing`
//              deliveries queued while no receiver runs, then one starts: deliveries/s until empty;
//   mixed      8 s, 70% starting/processing/logs and 30% succeeded deliveries whose output (a
//              640×480 PNG) is downloaded from a server on loopback, then thumbnailed.
// The queue is watched in the deliveries table; waiting for it to empty stops after
// BENCH_DRAIN_LIMIT_S (default 180 s), and what is left is reported.
// BENCH_DATABASE_URL selects the PostgreSQL server (default: the local one, database test);
// BENCH_CONNECTIONS wrk's connections (default 32), for both servers. burst and split also
// give the CPU each process used a delivery (genstore's, PostgreSQL's, the rest: wrk), from /proc.
// Needs `npm run build` (the binary runs dist/) and wrk (installed with apt-get when missing).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import { cleanEnv } from "../tests/support/cli.ts";
import { startOutputServer, type OutputServer } from "../tests/support/output-server.ts";
import { samplePrediction } from "../tests/support/webhook-deliveries.ts";
import { benchDatabaseUrl, withBenchDatabase, type BenchDatabase } from "./support.ts";

/** wrk's connections (BENCH_CONNECTIONS): requests in flight at once. */
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const BURST_S = Number(process.env.BENCH_BURST_S ?? 8);
const SUSTAIN_S = Number(process.env.BENCH_SUSTAIN_S ?? 60);
const DRAIN_LIMIT_S = Number(process.env.BENCH_DRAIN_LIMIT_S ?? 180);
const scenarios = (process.env.BENCH_SCENARIOS ?? "burst,split,sustained,drain,mixed").split(",");
/** BENCH_BIN: another build's binary (e.g. main's, for the figures before a change). */
const bin = path.resolve(process.env.BENCH_BIN ?? "bin/genstore");
const secret = `whsec_${randomBytes(24).toString("base64")}`;
const secretKey = Buffer.from(secret.slice("whsec_".length), "base64");
const work = mkdtempSync(path.join(os.tmpdir(), "genstore-bench-webhook-"));

function wrkPath(): string {
  for (const candidate of ["/usr/bin/wrk", "/usr/local/bin/wrk"]) if (existsSync(candidate)) return candidate;
  if (process.env.CI) throw new Error("wrk is missing: the webhook benchmark does not install it in CI");
  console.log("  installing wrk (apt-get install wrk)…");
  execFileSync("apt-get", ["install", "-y", "wrk"], { stdio: "ignore" });
  return "/usr/bin/wrk";
}

/** "wrk debian/4.1.0-3+b2" (wrk -v prints its version, then exits 1). */
function wrkVersion(wrk: string): string {
  try {
    return execFileSync(wrk, ["-v"])
      .toString()
      .split("\n")[0]!
      .replace(/ \[.*$/, "");
  } catch (error) {
    return String((error as { stdout?: Buffer }).stdout ?? "wrk")
      .split("\n")[0]!
      .replace(/ \[.*$/, "");
  }
}

// --- Deliveries ------------------------------------------------------------------------

type Kind = "starting" | "processing" | "logs" | "succeeded";

function predictionBody(id: string, kind: Kind, output: string | null): string {
  const running = kind !== "succeeded";
  return JSON.stringify(
    samplePrediction({
      id,
      status: kind === "logs" ? "processing" : kind,
      input: {
        prompt: "[EDITED] a red fox in snow, golden hour, 35mm, shallow depth of field",
        aspect_ratio: "1:1",
        num_outputs: 1,
        output_format: "png",
        output_quality: 90,
        guidance: 3.5,
        num_inference_steps: 4,
        seed: 1234,
        go_fast: true,
        megapixels: "1",
        disable_safety_checker: false,
        negative_prompt: "blurry, low quality, watermark, text, extra limbs, deformed hands",
        user_id: `user_${id.slice(-3)}`,
      },
      logs:
        kind === "starting"
          ? ""
          : "Using seed: 1234\nrunning quantized prediction\nLoading LoRA weights\n100%|██████████| 4/4 [00:01<00:00,  2.95it/s]\n",
      output: running ? null : [output],
      started_at: kind === "starting" ? null : "2026-11-20T10:00:01.000Z",
      completed_at: running ? null : "2026-11-20T10:00:04.000Z",
      metrics: running ? {} : { predict_time: 2.7, total_time: 4.0 },
      urls: {
        get: `https://api.replicate.com/v1/predictions/${id}`,
        cancel: `https://api.replicate.com/v1/predictions/${id}/cancel`,
        stream: `https://stream.replicate.com/v1/files/${randomBytes(20).toString("hex")}`,
        web: `https://replicate.com/p/${id}`,
      },
    }),
  );
}

/** Writes `count` signed deliveries for wrk (webhook-id, timestamp, signature, body a line); returns their mean size. */
async function writeDeliveries(
  file: string,
  count: number,
  bodyAt: (i: number) => string,
  tag: string,
): Promise<number> {
  const out = createWriteStream(file);
  const timestamp = Math.floor(Date.now() / 1000);
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const body = bodyAt(i);
    bytes += Buffer.byteLength(body);
    const id = `msg_${tag}_${i}`;
    const signature = createHmac("sha256", secretKey).update(`${id}.${timestamp}.${body}`).digest("base64");
    if (!out.write(`${id}\t${timestamp}\tv1,${signature}\t${body}\n`)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
  return bytes / count;
}

/** Every delivery `processing`, each for a prediction of its own. */
function processingPool(tag: string) {
  return (i: number) => predictionBody(`p${tag}${i.toString(36).padStart(7, "0")}`, "processing", null);
}

/**
 * Groups of ten: three predictions, each ending in `succeeded` (with one PNG output on the
 * loopback server), after a `starting`, `processing` and logs (`processing` again) for the
 * first two and a `processing` for the third: 70% non-final, 30% succeeded.
 */
function mixedPool(tag: string, outputs: OutputServer) {
  const pattern: Array<[number, Kind]> = [
    [0, "starting"],
    [1, "starting"],
    [0, "processing"],
    [2, "processing"],
    [1, "processing"],
    [0, "logs"],
    [1, "logs"],
    [2, "succeeded"],
    [0, "succeeded"],
    [1, "succeeded"],
  ];
  return (i: number) => {
    const [which, kind] = pattern[i % 10]!;
    const id = `p${tag}${(Math.floor(i / 10) * 3 + which).toString(36).padStart(7, "0")}`;
    return predictionBody(id, kind, outputs.url(`/png/${id}.png`));
  };
}

// --- Processes ---------------------------------------------------------------------------

interface Server {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** Starts a process and waits for `match` on its stdout (or on stderr, for `genstore worker`'s "Ready."). */
async function startProcess(
  args: string[],
  env: NodeJS.ProcessEnv,
  match: RegExp,
  on: "stdout" | "stderr" = "stdout",
): Promise<Server> {
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const output = { stdout: "", stderr: "" };
  const url = await new Promise<string>((resolve, reject) => {
    for (const stream of ["stdout", "stderr"] as const)
      child[stream].on("data", (chunk: Buffer) => {
        // The receiver logs a line per delivery: keep only the start, for a failure to start.
        if (output[stream].length < 10_000) output[stream] += chunk.toString();
        const found = stream === on && match.exec(output[stream]);
        if (found) resolve(found[1] ?? found[0]);
      });
    child.once("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}: ${output.stderr}`)));
  });
  return {
    child,
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

function startBare(): Promise<Server> {
  return startProcess(
    [path.resolve("bench/webhook-bare.mjs")],
    { ...process.env, BENCH_SECRET: secret },
    /^(http:\/\/\S+)$/m,
  );
}

function genstoreEnv(bench: BenchDatabase, outputs: OutputServer, home: string): NodeJS.ProcessEnv {
  return cleanEnv({
    ...bench.env,
    GENSTORE_HOME: home,
    REPLICATE_WEBHOOK_SECRET: secret,
    GENSTORE_OUTPUT_HOSTS: outputs.hostEntry,
  });
}

/** BENCH_NODE_ARGS: node flags for genstore's processes (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof). */
const nodeArgs = () => process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? [];

function startGenstore(
  bench: BenchDatabase,
  outputs: OutputServer,
  home: string,
  args: string[] = [],
): Promise<Server> {
  return startProcess(
    [...nodeArgs(), bin, "serve-webhook", "--port", "0", ...args],
    genstoreEnv(bench, outputs, home),
    /^(http:\/\/\S+\/api\/webhooks\/replicate)$/m,
  );
}

/** `genstore worker` on the same database, ready once it says so. */
function startWorker(bench: BenchDatabase, outputs: OutputServer, home: string): Promise<Server> {
  return startProcess([...nodeArgs(), bin, "worker"], genstoreEnv(bench, outputs, home), /^✔ Ready\./m, "stderr");
}

// --- CPU, from /proc ---------------------------------------------------------------------

const TICK_S = 1 / Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());

/** User + system CPU seconds of a process so far (0 once it is gone). */
function processCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * TICK_S;
  } catch {
    return 0;
  }
}

/** CPU seconds of every PostgreSQL process (server, backends, WAL writer, …) so far. */
function postgresCpu(): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8") === "postgres\n") total += processCpu(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** The machine's busy and total CPU seconds so far (all cores), from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0) * TICK_S;
  const idle = (fields[3]! + fields[4]!) * TICK_S;
  return { busy: total - idle, total };
}

/** Starts counting the CPU genstore's process, PostgreSQL and the machine use; stop() says how much, per delivery. */
function cpuMeter(pid: number) {
  const start = { ours: processCpu(pid), pg: postgresCpu(), machine: machineCpu(), at: performance.now() };
  return (deliveries: number, who: string) => {
    const machine = machineCpu();
    const ours = processCpu(pid) - start.ours;
    const pg = postgresCpu() - start.pg;
    const wall = (performance.now() - start.at) / 1000;
    const busy = machine.busy - start.machine.busy;
    const cores = (machine.total - start.machine.total) / wall;
    const us = (seconds: number) => `${fmt((seconds / deliveries) * 1e6)} µs`;
    return (
      `  CPU over ${wall.toFixed(1)} s: ${who} ${us(ours)} a delivery (${((ours / wall) * 100).toFixed(0)}% of a core), ` +
      `PostgreSQL ${us(pg)} (${((pg / wall) * 100).toFixed(0)}%), everything else ${us(busy - ours - pg)}; ` +
      `machine ${((busy / wall / cores) * 100).toFixed(0)}% busy of ${cores.toFixed(0)} cores`
    );
  };
}

// --- wrk -------------------------------------------------------------------------------

interface WrkResult {
  requests: number;
  seconds: number;
  rate: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  non2xx: number;
  socketErrors: number;
  /** When the load stopped (Date.now()). */
  stoppedAt: number;
}

async function runWrk(
  url: string,
  file: string,
  options: { seconds: number; rate?: number; onLine?: (line: string) => void },
): Promise<WrkResult> {
  const child = spawn(
    wrkPath(),
    [
      "-t1",
      `-c${CONNECTIONS}`,
      `-d${options.seconds}s`,
      "--timeout",
      "10s",
      "--latency",
      "-s",
      path.resolve("bench/webhook.lua"),
      url,
    ],
    {
      env: {
        ...process.env,
        BENCH_WRK_FILE: file,
        BENCH_WRK_PATH: new URL(url).pathname,
        BENCH_WRK_RATE: String(options.rate ?? 0),
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let stdout = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (/Running \d/.test(chunk.toString())) options.onLine?.("running");
  });
  const [code] = (await once(child, "exit")) as [number | null];
  const stoppedAt = Date.now();
  const json = /^BENCH_JSON (.*)$/m.exec(stdout);
  if (code !== 0 || !json) throw new Error(`wrk failed (${code}): ${stdout}`);
  const r = JSON.parse(json[1]!) as Record<string, number>;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const seconds = r["durationUs"]! / 1e6;
  return {
    requests: r["requests"]!,
    seconds,
    rate: r["requests"]! / seconds,
    p50: r["p50Us"]! / 1000,
    p90: r["p90Us"]! / 1000,
    p99: r["p99Us"]! / 1000,
    max: r["maxUs"]! / 1000,
    non2xx,
    socketErrors: r["connect"]! + r["read"]! + r["write"]! + r["timeout"]!,
    stoppedAt,
  };
}

// --- The queue, seen from the database ---------------------------------------------------------

async function backlog(bench: BenchDatabase): Promise<number> {
  const [row] = await bench.db.query<{ n: string }>(
    `SELECT count(*) AS n FROM "WebhookDelivery" WHERE state IN ('pending', 'processing')`,
  );
  return Number(row!.n);
}

/** Polls until the queue is empty (or the limit); seconds it took, and what was left. */
async function waitEmpty(bench: BenchDatabase, from: number): Promise<{ seconds: number; left: number }> {
  for (;;) {
    const left = await backlog(bench);
    const seconds = (Date.now() - from) / 1000;
    if (left === 0 || seconds > DRAIN_LIMIT_S) return { seconds, left };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Samples the backlog every second while the load runs. */
function watchBacklog(bench: BenchDatabase): { samples: number[]; stop(): Promise<void> } {
  const samples: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      samples.push(await backlog(bench));
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const ms = (n: number) => `${n.toFixed(1)} ms`;

function ackLine(name: string, r: WrkResult): string {
  const problems = r.non2xx + r.socketErrors > 0 ? `   ${r.non2xx} non-2xx, ${r.socketErrors} socket errors!` : "";
  return `  ${name.padEnd(38)} ${fmt(r.rate).padStart(6)} req/s   p50 ${ms(r.p50).padStart(8)}   p99 ${ms(r.p99).padStart(8)}   (${fmt(r.requests)} requests in ${r.seconds.toFixed(1)} s)${problems}`;
}

interface Drained {
  line: string;
  empty: boolean;
  emptySeconds: number;
}

/** The worker's figures for one load: done during the load, backlog at its end, time to empty. */
async function drainFigures(bench: BenchDatabase, r: WrkResult, tag: string): Promise<Drained> {
  const atStop = await backlog(bench);
  const accepted = (await stored(bench, tag)).deliveries;
  const empty = await waitEmpty(bench, r.stoppedAt);
  const doneDuring = accepted - atStop;
  const busySeconds = r.seconds + empty.seconds;
  const overall = (accepted - empty.left) / busySeconds;
  const after = empty.seconds > 0 ? (atStop - empty.left) / empty.seconds : 0;
  const line =
    `  worker: ${fmt(doneDuring / r.seconds)} deliveries/s during the load, ${fmt(atStop)} queued when it stopped; ` +
    (empty.left === 0
      ? `queue empty ${empty.seconds.toFixed(1)} s after the load stopped (${fmt(after)}/s then); drain ${fmt(overall)} deliveries/s overall`
      : `NOT empty after ${DRAIN_LIMIT_S} s: ${fmt(empty.left)} left (${fmt(after)}/s after the load)`);
  return { line, empty: empty.left === 0, emptySeconds: empty.seconds };
}

async function stored(
  bench: BenchDatabase,
  tag: string,
): Promise<{ deliveries: number; failed: number; rows: number }> {
  const [row] = await bench.db.query<{ deliveries: string; failed: string }>(
    `SELECT count(*) AS deliveries, count(*) FILTER (WHERE state = 'failed') AS failed FROM "WebhookDelivery" WHERE id LIKE $1`,
    `msg\\_${tag}\\_%`,
  );
  const table = (await bench.db.generations()).name;
  const [gen] = await bench.db.query<{ n: string }>(
    `SELECT count(*) AS n FROM ${table} WHERE "replicateId" LIKE $1`,
    `p${tag}%`,
  );
  return { deliveries: Number(row!.deliveries), failed: Number(row!.failed), rows: Number(gen!.n) };
}

// --- The run ---------------------------------------------------------------------------

await withBenchDatabase("webhook", async (bench) => {
  const wrk = wrkPath();
  const [server] = await bench.db.query<{ server_version: string }>("SHOW server_version");
  const outputs = await startOutputServer({ lifetimeMs: 60 * 60_000 });
  const home = path.join(work, "home");
  console.log(`webhook: the binary (serve-webhook, worker on, no flags) under wrk, beside a bare verify-only server`);
  console.log(
    `  command: npm run bench -- webhook (BENCH_SCENARIOS=${scenarios.join(",")} BENCH_BURST_S=${BURST_S} BENCH_SUSTAIN_S=${SUSTAIN_S})`,
  );
  console.log(
    `  setup: ${wrkVersion(wrk)} -t1 -c${CONNECTIONS} --latency; node ${process.version}, ${os.cpus().length} CPUs, ` +
      `PostgreSQL ${server!.server_version} at ${new URL(benchDatabaseUrl).host}; ${execFileSync("uptime").toString().trim()}`,
  );
  let genstore: Server | undefined;
  /** What an earlier scenario left queued (past the drain limit) is deleted, with no receiver running. */
  const clearQueue = async () => {
    await genstore?.stop();
    genstore = undefined;
    const [left] = await bench.db.query<{ n: string }>(
      `WITH gone AS (DELETE FROM "WebhookDelivery" WHERE state IN ('pending', 'processing') RETURNING 1) SELECT count(*) AS n FROM gone`,
    );
    if (Number(left!.n) > 0)
      console.log(`  (deleted the ${fmt(Number(left!.n))} deliveries left queued, before the next scenario)`);
  };
  /** A fresh receiver on an empty queue. */
  const restart = async () => {
    await clearQueue();
    genstore = await startGenstore(bench, outputs, home);
    return genstore;
  };
  try {
    let burstRate: number | undefined;
    /** The bare verify-only server's last req/s in this run. */
    let lastBare: number | undefined;
    /** The bare server under the same load (after a 2 s warm-up): its req/s, and a line saying so. */
    const bareRun = async (file: string, when: string): Promise<number> => {
      const bare = await startBare();
      try {
        await runWrk(bare.url + "/api/webhooks/replicate", file, { seconds: 2 });
        const reference = await runWrk(bare.url + "/api/webhooks/replicate", file, { seconds: BURST_S });
        console.log(ackLine(`bare node:http, verify only (${when})`, reference));
        return reference.rate;
      } finally {
        await bare.stop();
      }
    };
    if (scenarios.includes("burst") || scenarios.includes("sustained")) {
      const file = path.join(work, "burst.tsv");
      const pool = Number(process.env.BENCH_BURST_POOL ?? 160_000);
      const size = await writeDeliveries(file, pool, processingPool("b"), "b");
      console.log(
        `\nburst: ${BURST_S} s, every delivery a distinct \`processing\` one (${fmt(size)} bytes) for its own prediction`,
      );
      const before = await bareRun(file, "before");
      const ours = await restart();
      const warm = path.join(work, "warm.tsv");
      await writeDeliveries(warm, 1_000, processingPool("w"), "w");
      await runWrk(ours.url, warm, { seconds: 1 });
      await waitEmpty(bench, Date.now());
      const cpu = cpuMeter(ours.child.pid!);
      const r = await runWrk(ours.url, file, { seconds: BURST_S });
      if (r.requests > pool) console.log(`  (the pool of ${fmt(pool)} ran out: later requests were duplicates)`);
      console.log(ackLine("genstore serve-webhook", r));
      const drained = await drainFigures(bench, r, "b");
      console.log(drained.line);
      const kept = await stored(bench, "b");
      // From the load's start until the queue is empty: each delivery acked and ingested.
      console.log(cpu(kept.deliveries, "serve-webhook (ack + ingest)"));
      console.log(
        `  stored: ${fmt(kept.deliveries)} deliveries (${fmt(kept.failed)} failed), ${fmt(kept.rows)} generation rows`,
      );
      // The bare server's rate moves by a third from run to run here: measured before and after, the mean is the reference.
      await genstore?.stop();
      genstore = undefined;
      lastBare = await bareRun(file, "after");
      const ratio = r.rate / ((before + lastBare) / 2);
      console.log(
        `  targets: ack ${(ratio * 100).toFixed(0)}% of bare (mean of before and after; ≥ 50%: ${ratio >= 0.5 ? "met" : "NOT met"}); p99 ${ms(r.p99)} (< 50 ms: ${r.p99 < 50 ? "met" : "NOT met"})`,
      );
      burstRate = r.rate;
    }

    if (scenarios.includes("split")) {
      // The same burst to a receiver that only acks, then `genstore worker` alone drains what
      // it stored: what each half costs, measured apart (the CPU that acks and ingests share).
      const file = path.join(work, "split.tsv");
      const pool = Number(process.env.BENCH_BURST_POOL ?? 160_000);
      await writeDeliveries(file, pool, processingPool("x"), "x");
      console.log(
        `\nsplit: the burst's load to serve-webhook --no-worker (acks only), then genstore worker drains what it stored`,
      );
      const before = lastBare ?? (await bareRun(file, "before"));
      await clearQueue();
      const receiver = await startGenstore(bench, outputs, home, ["--no-worker"]);
      genstore = receiver;
      const warm = path.join(work, "warm-split.tsv");
      await writeDeliveries(warm, 1_000, processingPool("y"), "y");
      await runWrk(receiver.url, warm, { seconds: 1 });
      const acking = cpuMeter(receiver.child.pid!);
      const r = await runWrk(receiver.url, file, { seconds: BURST_S });
      const acked = (await stored(bench, "x")).deliveries;
      console.log(ackLine("genstore serve-webhook --no-worker", r));
      console.log(acking(acked, "serve-webhook --no-worker (ack)"));
      await receiver.stop();
      genstore = undefined;
      const after = await bareRun(file, "after");
      console.log(
        `  acks alone: ${((r.rate / ((before + after) / 2)) * 100).toFixed(0)}% of bare (mean of before and after)`,
      );
      const queued = await backlog(bench);
      const worker = await startWorker(bench, outputs, home);
      genstore = worker;
      const started = Date.now();
      const ingesting = cpuMeter(worker.child.pid!);
      const empty = await waitEmpty(bench, started);
      console.log(
        empty.left === 0
          ? `  genstore worker: ${fmt(queued)} queued deliveries ingested in ${empty.seconds.toFixed(1)} s: ${fmt(queued / empty.seconds)} deliveries/s`
          : `  genstore worker: NOT empty after ${DRAIN_LIMIT_S} s: ${fmt(empty.left)} of ${fmt(queued)} left`,
      );
      console.log(ingesting(queued - empty.left, "genstore worker (ingest)"));
    }

    if (scenarios.includes("sustained")) {
      const rate = Number(process.env.BENCH_SUSTAIN_RATE ?? Math.round(0.8 * (burstRate ?? 2_000)));
      const file = path.join(work, "sustained.tsv");
      const pool = Math.ceil(rate * SUSTAIN_S * 1.1);
      await writeDeliveries(file, pool, processingPool("s"), "s");
      console.log(
        `\nsustained: ${SUSTAIN_S} s paced at ${fmt(rate)} deliveries/s (80% of the burst's ack rate), distinct \`processing\` deliveries`,
      );
      const ours = await restart();
      const watch = watchBacklog(bench);
      const r = await runWrk(ours.url, file, { seconds: SUSTAIN_S, rate });
      await watch.stop();
      console.log(ackLine("genstore serve-webhook", r));
      const every = Math.max(1, Math.round(watch.samples.length / 12));
      console.log(
        `  queued during the load (every ${every} s): ${watch.samples
          .filter((_, i) => i % every === 0)
          .map(fmt)
          .join(" ")}`,
      );
      const drained = await drainFigures(bench, r, "s");
      console.log(drained.line);
      console.log(
        `  targets: p99 ${ms(r.p99)} (< 50 ms: ${r.p99 < 50 ? "met" : "NOT met"}); empty within 10 s (${drained.empty && drained.emptySeconds <= 10 ? "met" : "NOT met"})`,
      );
    }

    if (scenarios.includes("drain")) {
      const count = Number(process.env.BENCH_DRAIN_BACKLOG ?? 40_000);
      await clearQueue();
      const body = processingPool("d");
      for (let start = 0; start < count; start += 5_000) {
        const ids = Array.from({ length: Math.min(5_000, count - start) }, (_, i) => start + i);
        await bench.db.query(
          `INSERT INTO "WebhookDelivery" (id, "predictionId", state, body, query, attempts, "receivedAt", "updatedAt")
           SELECT 'msg_d_' || (d->>'i'), d->'b'->>'id', 'pending', d->'b', '{}'::jsonb, 0, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
             FROM jsonb_array_elements($1::jsonb) AS d`,
          JSON.stringify(ids.map((i) => ({ i, b: JSON.parse(body(i)) as unknown }))),
        );
      }
      console.log(`\ndrain: ${fmt(count)} distinct \`processing\` deliveries queued, then a receiver starts (no load)`);
      genstore = await startGenstore(bench, outputs, home);
      const started = Date.now();
      const empty = await waitEmpty(bench, started);
      const kept = await stored(bench, "d");
      console.log(
        empty.left === 0
          ? `  worker: queue empty ${empty.seconds.toFixed(1)} s after the receiver was ready: ${fmt(count / empty.seconds)} deliveries/s; ${fmt(kept.rows)} generation rows`
          : `  worker: NOT empty after ${DRAIN_LIMIT_S} s: ${fmt(empty.left)} left (${fmt((count - empty.left) / empty.seconds)} deliveries/s)`,
      );
      console.log(
        `  target: ≥ 2,000 deliveries/s (${empty.left === 0 && count / empty.seconds >= 2_000 ? "met" : "NOT met"})`,
      );
    }

    if (scenarios.includes("mixed")) {
      const file = path.join(work, "mixed.tsv");
      const pool = Number(process.env.BENCH_MIXED_POOL ?? 100_000);
      const size = await writeDeliveries(file, pool, mixedPool("m", outputs), "m");
      console.log(
        `\nmixed: ${BURST_S} s, 70% starting/processing/logs and 30% succeeded (one 640×480 PNG from loopback, thumbnailed); mean body ${fmt(size)} bytes`,
      );
      const ours = await restart();
      const before = outputs.count("/png/");
      const r = await runWrk(ours.url, file, { seconds: BURST_S });
      console.log(ackLine("genstore serve-webhook", r));
      const drained = await drainFigures(bench, r, "m");
      console.log(drained.line);
      const kept = await stored(bench, "m");
      console.log(
        `  stored: ${fmt(kept.deliveries)} deliveries (${fmt(kept.failed)} failed), ${fmt(kept.rows)} generation rows, ${fmt(outputs.count("/png/") - before)} downloads`,
      );
    }
  } finally {
    await genstore?.stop();
    await outputs.close();
    rmSync(work, { recursive: true, force: true });
  }
});
