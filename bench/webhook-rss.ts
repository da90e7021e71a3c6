// Peak memory of `genstore serve-webhook` (the real binary) under a flood of large bodies
// from a sender without the secret: COUNT (default 100) concurrent POSTs of 9.9 MiB each,
// in two kinds, each against a fresh receiver:
//   - unsigned: no webhook-* headers at all;
//   - forged: the three headers, a current timestamp, a signature that does not match (the
//     body must be read to find that out).
// The child's peak resident set (VmHWM in /proc/<pid>/status) is read after the flood, and its
// resident set (VmRSS) once the answers are in and the receiver has been idle for a few
// seconds. Target: peak under 300 MB. Every answer must be a 4xx or a 503 (never a reset).
// The receiver runs on PostgreSQL (BENCH_DATABASE_URL, a schema of its own), so that the
// figure is the receiver's, not the embedded database engine's.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { cleanEnv } from "../tests/support/cli.ts";
import { benchDatabaseUrl } from "./support.ts";
import { newSecret } from "../tests/support/webhook-deliveries.ts";

const COUNT = Number(process.env.BENCH_WEBHOOK_RSS_COUNT ?? 100);
const BODY_BYTES = Math.floor(9.9 * 1024 * 1024);
const MB = 1024 * 1024;
const bin = path.resolve("bin/genstore");

interface Receiver {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

async function startReceiver(home: string, databaseUrl: string): Promise<Receiver> {
  const child = spawn(process.execPath, [bin, "serve-webhook", "--port", "0"], {
    env: cleanEnv({ GENSTORE_HOME: home, DATABASE_URL: databaseUrl, REPLICATE_WEBHOOK_SECRET: newSecret() }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /^(http:\/\/\S+)$/m.exec(stdout);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`serve-webhook exited ${code}: ${stderr}`)));
  });
  return {
    child,
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

function send(url: string, body: Buffer, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request(
      url,
      { method: "POST", agent: false, headers: { ...headers, "content-length": String(body.length) } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(String(res.statusCode)));
      },
    );
    req.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    req.end(body);
  });
}

async function flood(kind: "unsigned" | "forged"): Promise<void> {
  const home = mkdtempSync(path.join(os.tmpdir(), "genstore-bench-rss-"));
  const schema = `genstore_bench_rss_${process.pid}`;
  const admin = new pg.Client({ connectionString: benchDatabaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${schema}"`);
  const databaseUrl = `${benchDatabaseUrl}?schema=${schema}`;
  execFileSync(process.execPath, [bin, "db", "migrate"], {
    env: cleanEnv({ DATABASE_URL: databaseUrl }),
    stdio: "ignore",
  });
  const receiver = await startReceiver(home, databaseUrl);
  try {
    const pid = receiver.child.pid!;
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const before = memory(pid).rss;
    const body = Buffer.alloc(BODY_BYTES, "x");
    body.write('{"id":"p1","status":"succeeded","logs":"');
    body.write('"}', BODY_BYTES - 2);
    const now = String(Math.floor(Date.now() / 1000));
    const headers = (): Record<string, string> =>
      kind === "unsigned"
        ? { "content-type": "application/json" }
        : {
            "content-type": "application/json",
            "webhook-id": `msg_${randomBytes(8).toString("hex")}`,
            "webhook-timestamp": now,
            "webhook-signature": `v1,${randomBytes(32).toString("base64")}`,
          };
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: COUNT }, () => send(receiver.url, body, headers())));
    const took = Date.now() - started;
    const peak = memory(pid).peak;
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const after = memory(pid).rss;
    await new Promise((resolve) => setTimeout(resolve, 25_000));
    const later = memory(pid).rss;
    const counts = new Map<string, number>();
    for (const answer of answers) counts.set(answer, (counts.get(answer) ?? 0) + 1);
    console.log(
      `${kind.padEnd(8)} ${COUNT} × 9.9 MiB: RSS ${Math.round(before / MB)} MB before, peak ${Math.round(peak / MB)} MB, ` +
        `${Math.round(after / MB)} MB 5 s after, ${Math.round(later / MB)} MB 30 s after; answers ${[...counts].map(([k, v]) => `${v}× ${k}`).join(", ")} (${took} ms)`,
    );
  } finally {
    await receiver.stop();
    rmSync(home, { recursive: true, force: true });
    await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
    await admin.end();
  }
}

console.log(
  `serve-webhook under ${COUNT} concurrent 9.9 MiB bodies from a sender without the secret (target: peak < 300 MB)`,
);
await flood("unsigned");
await flood("forged");
