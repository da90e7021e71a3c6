import { describe, expect, it, onTestFinished } from "vitest";
import { DatabaseError, describeError, StorageError } from "../src/errors.ts";
import { IngestRefusedError, OutputExpiredError, OutputUnavailableError } from "../src/pipeline/errors.ts";
import { ObjectExistsError } from "../src/storage/errors.ts";
import type { IngestRequest, IngestResult, PipelineDeps } from "../src/pipeline/types.ts";
import { runRecover, type RecoverDeps, type RecoverEvent, type RecoverInput } from "../src/jobs/recover.ts";
import { createReplicateClient } from "../src/replicate/client.ts";
import type { Storage } from "../src/storage/types.ts";
import { createTestDatabase } from "./support/db.ts";
import { fakePrediction, startFakeReplicate } from "./support/fake-replicate.ts";
import { insertGeneration } from "./support/generations.ts";

// runRecover's own decisions, with a stand-in for the ingestion pipeline that records what
// it was asked (recover-e2e.test.ts runs the real pipeline).

async function setup(options: { ingest?: (request: IngestRequest) => Promise<IngestResult> | IngestResult } = {}) {
  const api = await startFakeReplicate();
  onTestFinished(() => api.close());
  const { db } = await createTestDatabase("embedded");
  const calls: IngestRequest[] = [];
  const events: RecoverEvent[] = [];
  const ingest = async (_deps: PipelineDeps, request: IngestRequest) => {
    calls.push(request);
    return options.ingest ? options.ingest(request) : resultFor(request);
  };
  const controller = new AbortController();
  const deps: RecoverDeps = {
    replicate: createReplicateClient({
      token: api.token,
      baseUrl: api.url,
      sleep: async () => {},
      retry: { maxAttempts: 3 },
    }),
    ingest,
    pipeline: { db, storage: {} as Storage, config: { outputHosts: [], maxOutputBytes: 1 }, signal: controller.signal },
    signal: controller.signal,
    onEvent: (e) => events.push(e),
    sleep: async () => {},
  };
  const run = (input: RecoverInput) => runRecover(input, deps);
  return { api, db, calls, events, run, controller, deps };
}

function resultFor(request: IngestRequest, overrides: Partial<IngestResult> = {}): IngestResult {
  const p = request.prediction;
  const final = p.status !== "starting" && p.status !== "processing";
  return {
    predictionId: p.id,
    generationId: `g_${p.id}`,
    userId: request.user ?? "u1",
    status: p.status,
    outcome: "created",
    stored:
      final && p.status === "succeeded"
        ? [
            {
              index: 0,
              key: `generated/u1/g_${p.id}_0.webp`,
              size: 3,
              contentType: "image/webp",
              etag: "e",
              kind: "output",
            },
          ]
        : [],
    alreadyStored: [],
    expired: [],
    warnings: [],
    dryRun: request.dryRun === true,
    ...overrides,
  };
}

function addRow(db: Awaited<ReturnType<typeof setup>>["db"], id: string, replicateId: string | null, status: string) {
  return insertGeneration(db, { id, userId: "u1", prompt: "a fox", status, replicateId });
}

describe("runRecover with prediction ids", () => {
  it("fetches each id and ingests it via recover, then sums up", async () => {
    const { api, calls, run } = await setup();
    api.add(fakePrediction({ id: "aaa" }), fakePrediction({ id: "bbb" }));
    const result = await run({ ids: ["aaa", "bbb", "aaa"] });
    expect(calls.map((c) => [c.prediction.id, c.via, c.dryRun])).toEqual([
      ["aaa", "recover", false],
      ["bbb", "recover", false],
    ]);
    expect(result.items.map((i) => [i.predictionId, i.state, i.stored])).toEqual([
      ["aaa", "stored", ["generated/u1/g_aaa_0.webp"]],
      ["bbb", "stored", ["generated/u1/g_bbb_0.webp"]],
    ]);
    expect(result.exitCode).toBe(0);
    expect(result.summary).toBe("2 predictions: 2 stored.");
  });

  it("goes on after an unknown id and exits 7", async () => {
    const { api, run } = await setup();
    api.add(fakePrediction({ id: "aaa" }), fakePrediction({ id: "ccc" }));
    const result = await run({ ids: ["aaa", "nope", "ccc"], concurrency: 1 });
    expect(result.items.map((i) => i.state)).toEqual(["stored", "unknown", "stored"]);
    expect(result.items[1]!.message).toBe(
      "Unknown prediction nope: the Replicate API has no prediction with this id (HTTP 404).",
    );
    expect(result.exitCode).toBe(7);
    expect(result.summary).toBe("3 predictions: 2 stored, 1 unknown.");
  });

  it("refuses an unsafe id before calling Replicate (exit code 8)", async () => {
    const { api, run } = await setup();
    await expect(run({ ids: ["aaa", "../x"] })).rejects.toMatchObject({
      exitCode: 8,
      message: 'Refusing prediction id "../x": it may only contain lowercase letters and digits. Nothing was fetched.',
    });
    expect(api.requests).toHaveLength(0);
  });

  it("refuses an unsafe --user (exit code 8) and a mix of modes (exit code 2)", async () => {
    const { run } = await setup();
    await expect(run({ ids: ["aaa"], user: "../../etc" })).rejects.toMatchObject({ exitCode: 8 });
    await expect(run({ ids: ["aaa"], pending: true })).rejects.toMatchObject({ exitCode: 2 });
    await expect(run({})).rejects.toMatchObject({ exitCode: 2 });
  });

  it("stops at a refused token: the rest is not attempted, exit code 6", async () => {
    const { api, run, deps } = await setup();
    deps.replicate = createReplicateClient({ token: "wrong", baseUrl: api.url });
    const result = await run({ ids: ["aaa", "bbb", "ccc"], concurrency: 1 });
    expect(result.stopped).toMatchObject({
      kind: "replicate",
      message: expect.stringContaining("REPLICATE_API_TOKEN was refused"),
    });
    expect(result.items.map((i) => i.state)).toEqual(["skipped", "skipped", "skipped"]);
    expect(api.requests).toHaveLength(1);
    expect(result.exitCode).toBe(6);
  });

  it("reports a prediction Replicate kept throttling and goes on; exit code 6", async () => {
    const { api, run } = await setup();
    api.add(fakePrediction({ id: "aaa" }), fakePrediction({ id: "bbb" }));
    api.throttle(3, "1");
    const result = await run({ ids: ["aaa", "bbb"], concurrency: 1 });
    expect(result.items.map((i) => i.state)).toEqual(["rate-limited", "stored"]);
    expect(result.items[0]!.message).toContain("kept throttling prediction aaa (HTTP 429 after 3 attempts");
    expect(result.exitCode).toBe(6);
  });

  it("marks an expired output as a failure with a clear message", async () => {
    const { api, run } = await setup({
      ingest: (r) =>
        resultFor(r, {
          outcome: "updated",
          stored: [],
          expired: [{ index: 0, url: "https://replicate.delivery/x/out-0.webp" }],
        }),
    });
    api.add(fakePrediction({ id: "aaa", data_removed: true }));
    const result = await run({ ids: ["aaa"] });
    expect(result.items[0]).toMatchObject({
      state: "expired",
      message: expect.stringContaining("1 output of aaa is gone (404/410"),
    });
    expect(result.exitCode).toBe(7);
  });

  it.each<[string, Error, string, number]>([
    ["a refusal", new IngestRefusedError("aaa", "no userId"), "refused", 7],
    ["an expired output", new OutputExpiredError("https://replicate.delivery/x/out-0.png", 404), "expired", 7],
    ["a conflict at one key", new ObjectExistsError("generated/u1/g_0.png", "bucket b"), "failed", 7],
    ["an output that could not be downloaded", new OutputUnavailableError("https://x/o.png", "503"), "failed", 7],
    ["a bug", new Error("disk on fire"), "failed", 7],
    [
      "a bug that merely calls itself StorageError",
      Object.assign(new Error("x"), { name: "StorageError" }),
      "failed",
      7,
    ],
    ["unusable storage", new StorageError("Cannot reach S3 at http://127.0.0.1:1."), "skipped", 5],
    ["an unusable database", new DatabaseError("Cannot reach PostgreSQL at 127.0.0.1:1."), "skipped", 4],
  ])("maps %s from the pipeline to its item and the exit code", async (_, error, state, exitCode) => {
    const { api, run, calls } = await setup({
      ingest: () => {
        throw error;
      },
    });
    api.add(fakePrediction({ id: "aaa" }), fakePrediction({ id: "bbb" }));
    const result = await run({ ids: ["aaa", "bbb"], concurrency: 1 });
    expect(result.items[0]).toMatchObject({ state, message: describeError(error).message });
    expect(result.exitCode).toBe(exitCode);
    // A storage or database that became unusable stops the run: the next prediction is not started.
    expect(calls).toHaveLength(state === "skipped" ? 1 : 2);
  });

  it("passes --dry-run to the pipeline and reports planned items", async () => {
    const { api, calls, run } = await setup();
    api.add(fakePrediction({ id: "aaa" }));
    const result = await run({ ids: ["aaa"], dryRun: true });
    expect(calls[0]!.dryRun).toBe(true);
    expect(result.items[0]!.state).toBe("planned");
    expect(result.summary).toBe("Dry run: 1 prediction: 1 planned. Nothing was written.");
  });

  it("--watch polls a running prediction until it is final", async () => {
    const { api, calls, run, events } = await setup();
    api.add(fakePrediction({ id: "aaa", status: "processing", output: null }));
    api.progress("aaa", {
      afterPolls: 2,
      then: { status: "succeeded", output: ["https://replicate.delivery/x/o.webp"] },
    });
    const result = await run({ ids: ["aaa"], watch: true, intervalMs: 10 });
    expect(calls.map((c) => [c.via, c.prediction.status])).toEqual([
      ["recover", "processing"],
      ["poll", "processing"],
      ["poll", "succeeded"],
    ]);
    expect(result.items[0]).toMatchObject({ state: "stored", fetches: 3 });
    expect(result.rounds).toBe(2);
    expect(events.filter((e) => e.type === "waiting")).toHaveLength(2);
    expect(result.exitCode).toBe(0);
  });

  it("without --watch, a running prediction is pending and not a failure", async () => {
    const { api, run } = await setup();
    api.add(fakePrediction({ id: "aaa", status: "starting" }));
    const result = await run({ ids: ["aaa"] });
    expect(result.items[0]!.state).toBe("pending");
    expect(result.exitCode).toBe(0);
  });

  it("Ctrl-C during --watch ends the run as interrupted (130)", async () => {
    const { api, run, deps, controller } = await setup();
    api.add(fakePrediction({ id: "aaa", status: "processing" }));
    deps.sleep = (ms, signal) =>
      new Promise((_resolve, reject) => {
        controller.abort(new Error("SIGINT"));
        reject(signal?.reason as Error);
      });
    const result = await run({ ids: ["aaa"], watch: true, intervalMs: 10_000 });
    expect(result.stopped).toEqual({ kind: "interrupted" });
    expect(result.exitCode).toBe(130);
    expect(result.items[0]!.state).toBe("pending");
  });
});

describe("runRecover --pending", () => {
  it("polls every starting/processing row with a replicateId, via poll, counts the rest, refuses a bad stored id", async () => {
    const { api, db, calls, run, events } = await setup();
    await addRow(db, "g1", "aaa", "processing");
    await addRow(db, "g2", "bbb", "starting");
    await addRow(db, "g3", "ccc", "succeeded");
    await addRow(db, "g4", null, "processing");
    await addRow(db, "g5", "../etc", "processing");
    api.add(
      fakePrediction({ id: "aaa" }),
      fakePrediction({ id: "bbb", status: "processing" }),
      fakePrediction({ id: "ccc" }),
    );
    const result = await run({ pending: true });
    expect(calls.map((c) => [c.prediction.id, c.via]).sort()).toEqual([
      ["aaa", "poll"],
      ["bbb", "poll"],
    ]);
    expect(result.withoutReplicateId).toBe(1);
    expect(events[0]).toEqual({ type: "start", mode: "pending", total: 3, withoutReplicateId: 1 });
    expect(Object.fromEntries(result.items.map((i) => [i.predictionId, i.state]))).toEqual({
      aaa: "stored",
      bbb: "pending",
      "../etc": "refused",
    });
    expect(result.items.find((i) => i.predictionId === "../etc")!.message).toBe(
      'Refusing prediction id "../etc": it may only contain lowercase letters and digits; nothing was fetched.',
    );
    expect(api.requests.some((r) => r.path.includes("etc"))).toBe(false);
    expect(result.exitCode).toBe(7);
  });
});

describe("runRecover --since", () => {
  const at = (day: number) => `2026-11-${String(day).padStart(2, "0")}T10:00:00.000Z`;

  it("recovers only what the database lacks, and refuses orphans nobody owns", async () => {
    const { api, db, calls, run } = await setup();
    api.pageSize = 2;
    api.add(
      fakePrediction({ id: "new1", created_at: at(20), input: { prompt: "x", user_id: "u7" } }),
      fakePrediction({ id: "new2", created_at: at(19), input: { prompt: "x" } }),
      fakePrediction({ id: "have", created_at: at(18) }),
      fakePrediction({ id: "bad1", created_at: at(17), input: { prompt: "x", userId: "../u" } }),
      fakePrediction({ id: "old1", created_at: at(1) }),
    );
    await addRow(db, "g1", "have", "succeeded");
    const result = await run({ since: new Date(at(10)) });
    expect(calls.map((c) => [c.prediction.id, c.via, c.user])).toEqual([["new1", "recover", undefined]]);
    expect(result.listed).toBe(4);
    expect(result.present).toBe(1);
    expect(Object.fromEntries(result.items.map((i) => [i.predictionId, [i.state, i.message]]))).toEqual({
      new1: ["stored", undefined],
      new2: [
        "refused",
        "Orphan new2 has no row and no user_id/userId in its input: nothing says whose it is; nothing was stored.",
      ],
      bad1: ["refused", 'Orphan bad1 has input.userId "../u", which contains a slash; nothing was stored.'],
    });
    expect(result.exitCode).toBe(7);
    // Listed objects are used as they are: no GET per prediction.
    expect(api.requests.every((r) => r.path === "/v1/predictions")).toBe(true);
  });

  it("places every orphan with --user", async () => {
    const { api, calls, run } = await setup();
    api.add(fakePrediction({ id: "new1", created_at: at(20) }), fakePrediction({ id: "new2", created_at: at(19) }));
    const result = await run({ since: new Date(at(10)), user: "u9" });
    expect(calls.map((c) => c.user)).toEqual(["u9", "u9"]);
    expect(result.exitCode).toBe(0);
  });
});
