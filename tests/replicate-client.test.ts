import http from "node:http";
import type { AddressInfo } from "node:net";
import Replicate from "replicate";
import { describe, expect, it, onTestFinished } from "vitest";
import { createReplicateClient, type ReplicateClientOptions } from "../src/replicate/client.ts";
import { ReplicateError } from "../src/replicate/errors.ts";
import { fakePrediction, startFakeReplicate, type FakeReplicate } from "./support/fake-replicate.ts";

async function fake(options: Parameters<typeof startFakeReplicate>[0] = {}): Promise<FakeReplicate> {
  const api = await startFakeReplicate(options);
  onTestFinished(() => api.close());
  return api;
}

/** A client whose waits are recorded, not slept. */
function client(api: FakeReplicate, extra: Partial<ReplicateClientOptions> = {}) {
  const waits: number[] = [];
  const c = createReplicateClient({
    token: api.token,
    baseUrl: api.url,
    sleep: async (ms) => void waits.push(ms),
    random: () => 1,
    ...extra,
  });
  return { c, waits };
}

async function caught(promise: Promise<unknown>): Promise<ReplicateError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ReplicateError);
  return error as ReplicateError;
}

describe("what replicate 1.4 does on its own (why genstore retries itself)", () => {
  it("calls again 5 more times at once on a 429, ignoring Retry-After", async () => {
    const api = await fake();
    api.add(fakePrediction({ id: "abc" }));
    api.throttle(10, "30");
    const replicate = new Replicate({ auth: api.token, baseUrl: api.url });
    const started = Date.now();
    await expect(replicate.predictions.get("abc")).rejects.toMatchObject({
      name: "ApiError",
      response: { status: 429 },
    });
    expect(api.requests).toHaveLength(6);
    // Honouring Retry-After (30 s) would have taken minutes.
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it("answers a 404 with an ApiError after one request", async () => {
    const api = await fake();
    const replicate = new Replicate({ auth: api.token, baseUrl: api.url });
    await expect(replicate.predictions.get("nope")).rejects.toMatchObject({
      name: "ApiError",
      response: { status: 404 },
    });
    expect(api.requests).toHaveLength(1);
  });
});

describe("getPrediction", () => {
  it("returns the parsed prediction, with the Bearer token sent", async () => {
    const api = await fake();
    api.add(
      fakePrediction({
        id: "abc",
        output: ["https://replicate.delivery/x/out-0.webp"],
        input: { prompt: "[EDITED] a fox" },
      }),
    );
    const { c } = client(api);
    const prediction = await c.getPrediction("abc");
    expect(prediction).toMatchObject({
      id: "abc",
      status: "succeeded",
      output: ["https://replicate.delivery/x/out-0.webp"],
      input: { prompt: "[EDITED] a fox" },
    });
    expect(api.requests).toMatchObject([{ method: "GET", path: "/v1/predictions/abc", authorized: true, status: 200 }]);
  });

  it("says an unknown id is unknown (404), with no retry", async () => {
    const api = await fake();
    const { c } = client(api);
    const error = await caught(c.getPrediction("missing123"));
    expect(error.kind).toBe("unknown-prediction");
    expect(error.message).toBe(
      "Unknown prediction missing123: the Replicate API has no prediction with this id (HTTP 404).",
    );
    expect(error.exitCode).toBe(7);
    expect(api.requests).toHaveLength(1);
  });

  it("says the token was refused (401), exit code 6, with no retry", async () => {
    const api = await fake({ token: "r8_right" });
    api.add(fakePrediction({ id: "abc" }));
    const error = await caught(createReplicateClient({ token: "r8_wrong", baseUrl: api.url }).getPrediction("abc"));
    expect(error.kind).toBe("unauthorized");
    expect(error.message).toContain("REPLICATE_API_TOKEN was refused");
    expect(error.exitCode).toBe(6);
    expect(api.requests).toHaveLength(1);
  });

  it("waits what Retry-After says (seconds) and then succeeds, one request per attempt", async () => {
    const api = await fake();
    api.add(fakePrediction({ id: "abc" }));
    api.throttle(2, "3");
    const retries: string[] = [];
    const { c, waits } = client(api, { onRetry: (e) => retries.push(`${e.what}: ${e.reason}, ${e.delayMs}ms`) });
    await expect(c.getPrediction("abc")).resolves.toMatchObject({ id: "abc" });
    expect(waits).toEqual([3_000, 3_000]);
    expect(retries).toEqual(["prediction abc: HTTP 429, 3000ms", "prediction abc: HTTP 429, 3000ms"]);
    expect(api.requests.map((r) => r.status)).toEqual([429, 429, 200]);
  });

  it("reads Retry-After as an HTTP date", async () => {
    const api = await fake();
    api.add(fakePrediction({ id: "abc" }));
    api.throttle(1, new Date(Date.now() + 5_000).toUTCString());
    const { c, waits } = client(api);
    await c.getPrediction("abc");
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThan(3_000);
    expect(waits[0]).toBeLessThanOrEqual(5_000);
  });

  it("gives up on a 429 that does not clear after 5 attempts: rate-limited, exit code 6", async () => {
    const api = await fake();
    api.add(fakePrediction({ id: "abc" }));
    api.throttle(100, "1");
    const { c, waits } = client(api);
    const error = await caught(c.getPrediction("abc"));
    expect(error.kind).toBe("rate-limited");
    expect(error.message).toBe(
      "The Replicate API kept throttling prediction abc (HTTP 429 after 5 attempts over 8.0s).",
    );
    expect(error.exitCode).toBe(6);
    // Retry-After (1 s) is a minimum: the backoff's longer waits are kept.
    expect(waits).toEqual([1_000, 1_000, 2_000, 4_000]);
    // Not multiplied by the package's own 5 extra calls.
    expect(api.requests).toHaveLength(5);
  });

  it("does not wait longer than the budget when Retry-After asks too much", async () => {
    const api = await fake();
    api.add(fakePrediction({ id: "abc" }));
    api.throttle(1, "3600");
    const { c, waits } = client(api);
    const error = await caught(c.getPrediction("abc"));
    expect(error.message).toContain("it asked to wait 3600s more");
    expect(waits).toEqual([]);
    expect(api.requests).toHaveLength(1);
  });

  it("retries 5xx answers and dropped connections with backoff", async () => {
    const api = await fake();
    api.add(fakePrediction({ id: "abc" }));
    api.fail(1, 503);
    api.dropConnections(1);
    api.fail(1, 500);
    const { c, waits } = client(api);
    await expect(c.getPrediction("abc")).resolves.toMatchObject({ id: "abc" });
    expect(waits).toEqual([500, 1_000, 2_000]);
    expect(api.requests.map((r) => r.status)).toEqual([503, -1, 500, 200]);
  });

  it("says the API is unreachable after its retries (exit code 6)", async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const waits: number[] = [];
    const c = createReplicateClient({
      token: "t",
      baseUrl: `http://127.0.0.1:${port}/v1`,
      sleep: async (ms) => void waits.push(ms),
      random: () => 0,
    });
    const error = await caught(c.getPrediction("abc"));
    expect(error.kind).toBe("unreachable");
    expect(error.message).toBe(
      `Cannot reach the Replicate API at http://127.0.0.1:${port}/v1: connection refused (ECONNREFUSED) (after 5 attempts).`,
    );
    expect(waits).toEqual([250, 500, 1_000, 2_000]);
  });

  it("stops waiting at once when the signal aborts", async () => {
    const api = await fake();
    api.add(fakePrediction({ id: "abc" }));
    api.throttle(100, "20");
    const c = createReplicateClient({ token: api.token, baseUrl: api.url });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop")), 100);
    const started = Date.now();
    await expect(c.getPrediction("abc", { signal: controller.signal })).rejects.toThrow("stop");
    // Without the abort it would wait the 20 s Retry-After.
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it("refuses an answer that is not a prediction", async () => {
    const c = createReplicateClient({
      token: "t",
      baseUrl: "http://127.0.0.1:9/v1",
      fetch: async () => new Response(JSON.stringify({ id: "abc", status: "exploded" }), { status: 200 }),
    });
    const error = await caught(c.getPrediction("abc"));
    expect(error.kind).toBe("bad-response");
    expect(error.message).toContain("not a Replicate prediction: status");
  });
});

describe("listPredictionsSince", () => {
  const at = (day: number) => `2026-11-${String(day).padStart(2, "0")}T10:00:00.000Z`;

  it("pages newest first and stops at the first page that reaches older predictions", async () => {
    const api = await fake({ pageSize: 2 });
    for (let day = 10; day <= 19; day += 1) api.add(fakePrediction({ id: `p${day}`, created_at: at(day) }));
    const { c } = client(api);
    const pages: string[][] = [];
    for await (const page of c.listPredictionsSince(new Date(at(15)))) pages.push(page.map((p) => p.id));
    expect(pages).toEqual([["p19", "p18"], ["p17", "p16"], ["p15"]]);
    // 3 pages of 5: the one holding p14 ends the listing; p13… are never asked for.
    expect(api.requests.map((r) => r.path)).toEqual(["/v1/predictions", "/v1/predictions", "/v1/predictions"]);
    expect(api.requests[1]!.query.cursor).toBeDefined();
  });

  it("reads every page when all are newer, and retries a throttled page", async () => {
    const api = await fake({ pageSize: 3 });
    for (let day = 20; day <= 26; day += 1) api.add(fakePrediction({ id: `p${day}`, created_at: at(day) }));
    const { c, waits } = client(api);
    const ids: string[] = [];
    let n = 0;
    for await (const page of c.listPredictionsSince(new Date(at(1)))) {
      if (++n === 2) api.throttle(1, "2");
      ids.push(...page.map((p) => p.id));
    }
    expect(ids).toEqual(["p26", "p25", "p24", "p23", "p22", "p21", "p20"]);
    expect(waits).toEqual([2_000]);
  });

  it("does not follow a next link to another host (the token would go with it)", async () => {
    const c = createReplicateClient({
      token: "t",
      baseUrl: "http://127.0.0.1:9/v1",
      fetch: async () =>
        new Response(
          JSON.stringify({
            previous: null,
            next: "http://evil.example/v1/predictions?cursor=x",
            results: [fakePrediction({ id: "a" })],
          }),
        ),
    });
    const pages: unknown[] = [];
    const error = await caught(
      (async () => {
        for await (const page of c.listPredictionsSince(new Date(0))) pages.push(page);
      })(),
    );
    expect(pages).toHaveLength(1);
    expect(error.message).toContain("its next link leaves http://127.0.0.1:9/v1/");
  });

  it("says the token was refused when listing", async () => {
    const api = await fake();
    const c = createReplicateClient({ token: "bad", baseUrl: api.url });
    const error = await caught(c.listPredictionsSince(new Date(0)).next());
    expect(error.kind).toBe("unauthorized");
  });
});
