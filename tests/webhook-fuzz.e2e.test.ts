import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import { describe, expect, it, onTestFinished } from "vitest";
import { bin, cleanEnv, migratedHome } from "./support/cli.ts";
import { newSecret, request, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// A fuzz test of the receiver: a few thousand malformed bodies, generated from a fixed seed
// (the same run every time), signed and unsigned, against the real binary. Whatever a sender
// sends, the receiver answers it with a 4xx (or 200 for what is a prediction after all),
// never a 5xx, stays healthy, and its memory comes back near where it started.

const SEED = 20261202;
const COUNT = 2_400;
const PARALLEL = 16;

/** mulberry32: a small, fast, seeded generator (the same sequence on every run). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Body = string | Buffer;

function bodies(next: () => number): Array<() => Body> {
  const int = (max: number) => Math.floor(next() * max);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const prediction = () => samplePrediction({ id: `p${int(1e9).toString(36)}` });
  const junk = ["", "null", "true", "0", "-0", "[]", "{}", '""', "[[[]]]", '{"id":', "\u0000", '{"a":1}}'];
  const values: unknown[] = [null, true, 0, -1, 1.5, "", "x", [], {}, [1, 2], { a: 1 }, "https://evil.example/x.png"];
  return [
    // Bytes that are not JSON, or not UTF-8.
    () => Buffer.from(Array.from({ length: int(2048) }, () => int(256))),
    () => pick(junk),
    // A prediction cut short, or with a byte flipped.
    () => JSON.stringify(prediction()).slice(0, int(400)),
    () => {
      const text = Buffer.from(JSON.stringify(prediction()));
      text[int(text.length)] = int(256);
      return text;
    },
    // A prediction with a field of the wrong kind, or missing.
    () => {
      const p = prediction();
      const field = pick(["id", "status", "output", "input", "created_at", "metrics", "urls", "error", "logs"]);
      if (next() < 0.3) delete p[field];
      else p[field] = pick(values);
      return JSON.stringify(p);
    },
    // Deep nesting, numbers out of range, long ids, odd strings.
    () => {
      const depth = 50 + int(20_000);
      return JSON.stringify(prediction()).replace('"logs":""', `"logs":${"[".repeat(depth)}${"]".repeat(depth)}`);
    },
    () =>
      JSON.stringify(prediction()).replace(
        '"predict_time":2.7',
        `"predict_time":${pick(["1e200000", "-1e400", "1e-99999", "9".repeat(500), "1e308", "0e-20000"])}`,
      ),
    () => JSON.stringify(samplePrediction({ id: "p".repeat(int(5_000)) })),
    () =>
      JSON.stringify(prediction()).replace(
        '"logs":""',
        `"logs":"${pick(["\\ud800", "\\u0000", "\\udfff\\ud800", "\\u202e", "\u{1F600}".repeat(int(100))])}"`,
      ),
    () =>
      JSON.stringify(
        samplePrediction({
          input: { prompt: "x", user_id: pick(["../x", ".hidden", "a\u202eb", "x".repeat(300), "ok_user"]) },
        }),
      ),
    // Valid after all: accepted (200) and queued.
    () => JSON.stringify(prediction()),
  ];
}

function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

describe("the receiver under a fuzz of malformed deliveries (the binary)", () => {
  it(
    `answers ${COUNT} generated bodies without a 5xx, stays healthy, and gives its memory back`,
    {
      timeout: 400_000,
    },
    async () => {
      const home = await migratedHome("genstore-fuzz-");
      const secret = newSecret();
      const child = spawn(process.execPath, [bin, "serve-webhook", "--port", "0", "--concurrency", "1"], {
        env: cleanEnv({ GENSTORE_HOME: home, REPLICATE_WEBHOOK_SECRET: secret }),
        stdio: ["ignore", "pipe", "pipe"],
      });
      onTestFinished(() => {
        if (child.exitCode === null) child.kill("SIGKILL");
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk) => (stdout += chunk));
      child.stderr.on("data", (chunk) => (stderr += chunk));
      const url = await waitFor(
        () =>
          /^(http:\/\/\S+)$/m.exec(stdout)?.[1] ??
          (child.exitCode !== null ? Promise.reject(new Error(stderr)) : undefined),
        150_000,
        "serve-webhook to listen",
      );
      const base = url.replace(/\/api\/webhooks\/replicate$/, "");

      const next = random(SEED);
      const makers = bodies(next);
      const agent = new http.Agent({ keepAlive: true, maxSockets: PARALLEL });
      onTestFinished(() => agent.destroy());
      const stale = new Date(Date.now() - 10 * 60_000);
      const send = async (): Promise<number> => {
        const body = makers[Math.floor(next() * makers.length)]!();
        const text = typeof body === "string" ? body : body.toString("latin1");
        const how = next();
        const headers =
          how < 0.55
            ? svixSigned(text, secret).headers
            : how < 0.7
              ? { "content-type": "application/json" }
              : how < 0.85
                ? svixSigned(text, newSecret()).headers
                : svixSigned(text, secret, { date: stale }).headers;
        // The signature covers the bytes as sent: a Buffer body is signed as its latin1 text.
        return (
          await request("POST", url, typeof body === "string" ? body : Buffer.from(text, "latin1"), headers, agent)
        ).status;
      };
      const run = async (count: number) => {
        const statuses = new Map<number, number>();
        let left = count;
        await Promise.all(
          Array.from({ length: PARALLEL }, async () => {
            while (left-- > 0) {
              const status = await send();
              statuses.set(status, (statuses.get(status) ?? 0) + 1);
            }
          }),
        );
        return statuses;
      };

      await run(200); // warm up: code loaded, pools and caches filled
      const before = rss(child.pid!);
      const statuses = await run(COUNT);
      const answered = [...statuses.values()].reduce((a, b) => a + b, 0);
      expect(answered).toBe(COUNT);
      expect([...statuses.keys()].filter((status) => status >= 500 || status < 200)).toEqual([]);
      expect([...statuses.keys()].every((status) => [200, 400, 401].includes(status))).toBe(true);
      expect(statuses.get(400)).toBeGreaterThan(COUNT / 10);
      expect(statuses.get(401)).toBeGreaterThan(COUNT / 10);

      const health = await request("GET", `${base}/healthz`);
      expect(health.status).toBe(200);
      expect(health.json).toMatchObject({ ok: true });
      const after = rss(child.pid!);
      expect(
        after - before,
        `RSS ${Math.round(before / 2 ** 20)} MB before, ${Math.round(after / 2 ** 20)} MB after`,
      ).toBeLessThan(64 * 2 ** 20);
      expect(stderr).not.toMatch(/Unexpected error|500 POST/);
      child.kill("SIGTERM");
      expect(await new Promise((resolve) => child.on("exit", resolve))).toBe(0);
    },
  );
});
