import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { describe, expect, it, onTestFinished } from "vitest";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { runRecover, type RecoverInput } from "../src/jobs/recover.ts";
import { createReplicateClient } from "../src/replicate/client.ts";
import { createLocalStorage } from "../src/storage/local.ts";
import { bin, cleanEnv, genstore, migratedHome } from "./support/cli.ts";
import { createTestDatabase, databaseKinds, databaseEnv, type DatabaseKind } from "./support/db.ts";
import { fakePrediction, startFakeReplicate, type FakeReplicate } from "./support/fake-replicate.ts";
import { startOutputServer, type OutputServer } from "./support/output-server.ts";
import { pipelineDeps, tempDir } from "./support/pipeline-fixtures.ts";
import { countGenerations, generation, generations, insertGeneration } from "./support/generations.ts";
import { waitFor } from "./support/wait.ts";

// recover end to end: the fake Replicate API, the output-file server, the real ingestion
// pipeline, local storage, on each database kind; then the real binary.

async function servers(): Promise<{ api: FakeReplicate; files: OutputServer }> {
  const [api, files] = await Promise.all([startFakeReplicate(), startOutputServer()]);
  onTestFinished(async () => {
    await Promise.all([api.close(), files.close()]);
  });
  return { api, files };
}

/** Every file under root, relative, without the local provider's hidden metadata. */
async function files(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile() && !e.name.startsWith("."))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

/** The three kinds of prediction a run meets: two good ones, an expired output, and (by id) an unknown one. */
function addPredictions(api: FakeReplicate, out: OutputServer) {
  api.add(
    fakePrediction({
      id: "edit1",
      input: { prompt: "[EDITED] a fox", user_id: "u1" },
      output: [out.url("/png/out-0.png")],
    }),
    fakePrediction({
      id: "video1",
      input: { prompt: "[VIDEO] a fox running", user_id: "u1" },
      output: out.url("/mp4/out.mp4"),
    }),
    fakePrediction({
      id: "gone1",
      input: { prompt: "a fox", user_id: "u1" },
      output: [out.url("/status/404/out-0.webp")],
      data_removed: true,
    }),
  );
}

describe.each(databaseKinds)("recover through the real pipeline on %s", (kind: DatabaseKind) => {
  async function setup() {
    const { api, files: out } = await servers();
    const { db } = await createTestDatabase(kind);
    const root = path.join(await tempDir("genstore-recover-"), "storage");
    const storage = createLocalStorage(root);
    const controller = new AbortController();
    const run = (input: RecoverInput) =>
      runRecover(input, {
        replicate: createReplicateClient({
          token: api.token,
          baseUrl: api.url,
          retry: { baseDelayMs: 5, maxDelayMs: 20 },
        }),
        ingest: ingestPrediction,
        pipeline: pipelineDeps(db, storage, [out.hostEntry], { signal: controller.signal }),
        signal: controller.signal,
      });
    return { api, out, db, root, run };
  }

  it("stores good predictions in their context folders, reports expired and unknown ones, and a rerun changes nothing", async () => {
    const { api, out, db, root, run } = await setup();
    addPredictions(api, out);
    const result = await run({ ids: ["edit1", "video1", "gone1", "unknown1"] });
    expect(Object.fromEntries(result.items.map((i) => [i.predictionId, i.state]))).toEqual({
      edit1: "stored",
      video1: "stored",
      gone1: "expired",
      unknown1: "unknown",
    });
    expect(result.exitCode).toBe(7);
    expect(result.summary).toBe("4 predictions: 2 stored, 1 expired, 1 unknown.");

    const rows = await generations(db, { orderBy: "replicateId" });
    expect(rows.map((r) => [r.replicateId, r.status, r.storageContext, r.userId])).toEqual([
      ["edit1", "succeeded", "edited", "u1"],
      ["gone1", "succeeded", "generated", "u1"],
      ["video1", "succeeded", "videos", "u1"],
    ]);
    const edit = rows[0]!;
    const video = rows[2]!;
    expect(await files(root)).toEqual(
      expect.arrayContaining([
        `edited/u1/${edit.id}_0.png`,
        `videos/u1/${video.id}.mp4`,
        `thumbnails/edited/u1/${edit.id}_0.webp`,
      ]),
    );
    expect(await readFile(path.join(root, `edited/u1/${edit.id}_0.png`))).toEqual(out.bytes.png);
    expect(rows[1]!.error ?? JSON.stringify(rows[1]!.metadata)).toMatch(/expired|gone|404/i);
    expect((rows[0]!.metadata as { arrivedVia?: string }).arrivedVia).toBe("recover");

    const before = await files(root);
    const downloads = out.requests.length;
    const again = await run({ ids: ["edit1", "video1"] });
    expect(again.items.map((i) => i.state)).toEqual(["unchanged", "unchanged"]);
    expect(again.items.map((i) => [i.predictionId, i.stored, [...i.alreadyStored].sort()])).toEqual([
      ["edit1", [], [`edited/u1/${edit.id}_0.png`, `thumbnails/edited/u1/${edit.id}_0.webp`]],
      ["video1", [], [`videos/u1/${video.id}.mp4`]],
    ]);
    expect(again.exitCode).toBe(0);
    expect(await files(root)).toEqual(before);
    expect(out.requests.length).toBe(downloads);
  });

  it("--pending --watch polls a running row until Replicate finishes it, then stores its output", async () => {
    const { api, out, db, root, run } = await setup();
    await insertGeneration(db, {
      id: "g_run",
      userId: "u2",
      prompt: "[UPSCALED] a fox",
      status: "processing",
      replicateId: "run1",
    });
    await insertGeneration(db, { id: "g_old", userId: "u2", prompt: "a fox", status: "starting" });
    api.add(fakePrediction({ id: "run1", status: "processing", input: { prompt: "[UPSCALED] a fox" }, output: null }));
    api.progress("run1", {
      afterPolls: 2,
      then: { status: "succeeded", output: [out.url("/png/up.png")], completed_at: new Date().toISOString() },
    });
    const result = await run({ pending: true, watch: true, intervalMs: 20 });
    expect(result.items).toMatchObject([{ predictionId: "run1", state: "stored", via: "poll", fetches: 3 }]);
    expect(result.withoutReplicateId).toBe(1);
    expect(result.exitCode).toBe(0);
    const row = await generation(db, { id: "g_run" });
    expect(row.status).toBe("succeeded");
    expect(await files(root)).toContain("upscaled/u2/g_run_0.png");
  });

  it("--since recovers orphans (userId from the input or --user), and --dry-run writes nothing", async () => {
    const { api, out, db, root, run } = await setup();
    const recent = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
    api.pageSize = 2;
    api.add(
      fakePrediction({
        id: "orph1",
        created_at: recent(5),
        input: { prompt: "a fox", user_id: "u3" },
        output: [out.url("/png/a.png")],
      }),
      fakePrediction({
        id: "orph2",
        created_at: recent(10),
        input: { prompt: "[EDITED] a fox" },
        output: [out.url("/png/b.png")],
      }),
      fakePrediction({ id: "have1", created_at: recent(15), output: [out.url("/png/c.png")] }),
      fakePrediction({ id: "old1", created_at: recent(60 * 48), output: [out.url("/png/d.png")] }),
    );
    await insertGeneration(db, {
      id: "g_have",
      userId: "u1",
      prompt: "a fox",
      status: "succeeded",
      replicateId: "have1",
    });
    const since = new Date(Date.now() - 24 * 3_600_000);

    const dry = await run({ since, dryRun: true, user: "u9" });
    expect(dry.items.map((i) => [i.predictionId, i.state])).toEqual([
      ["orph1", "planned"],
      ["orph2", "planned"],
    ]);
    expect(dry.items[1]!.planned).toEqual([
      expect.stringMatching(/^edited\/u9\/\w+_0\.png$/),
      expect.stringMatching(/^thumbnails\/edited\/u9\//),
    ]);
    expect(await files(root)).toEqual([]);
    expect(await countGenerations(db)).toBe(1);

    const first = await run({ since });
    expect(Object.fromEntries(first.items.map((i) => [i.predictionId, i.state]))).toEqual({
      orph1: "stored",
      orph2: "refused",
    });
    expect(first.exitCode).toBe(7);
    expect(first).toMatchObject({ listed: 3, present: 1 });

    const second = await run({ since, user: "u9" });
    expect(second.items.map((i) => [i.predictionId, i.state, i.userId])).toEqual([["orph2", "stored", "u9"]]);
    expect(second.exitCode).toBe(0);
    const rows = (await generations(db, { orderBy: "replicateId" })).filter((r) =>
      ["orph1", "orph2"].includes(r.replicateId ?? ""),
    );
    expect(rows.map((r) => [r.replicateId, r.userId, r.storageContext])).toEqual([
      ["orph1", "u3", "generated"],
      ["orph2", "u9", "edited"],
    ]);
  });
});

// The binary, as an operator runs it.

const home = () => migratedHome();

// Each binary run starts Node, opens the database and migrates it: seconds each on a busy machine.
describe("genstore recover (the binary)", () => {
  it("exits 0 when all are stored, 7 with one unknown id among good ones, 6 for a refused token, 8 for an unsafe id", async () => {
    const { api, files: out } = await servers();
    addPredictions(api, out);
    const dir = await home();
    const env = {
      GENSTORE_HOME: dir,
      REPLICATE_API_TOKEN: api.token,
      REPLICATE_API_BASE_URL: api.url,
      GENSTORE_OUTPUT_HOSTS: out.hostEntry,
    };

    const ok = await genstore(["recover", "edit1", "video1"], env);
    expect(ok.stderr).not.toContain("error:");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/edit1\s+│ succeeded │ stored\s+│ u1\s+│ 2\s+│ edited\/u1\/\w+_0\.png \(\+1 more\)/);
    expect(ok.stdout).toContain("2 predictions: 2 stored.");
    expect(ok.stdout).not.toContain("\x1b[");

    const partial = await genstore(["recover", "edit1", "nope1", "video1"], env);
    expect(partial.code).toBe(7);
    expect(partial.stdout).toMatch(/nope1\s+│ -\s+│ unknown/);
    expect(partial.stdout).toContain("3 predictions: 2 already stored, 1 unknown.");
    expect(partial.stderr).toContain(
      "✖ nope1: Unknown prediction nope1: the Replicate API has no prediction with this id (HTTP 404).",
    );
    expect(partial.stderr).toContain("error: 1 of 3 predictions failed");

    const json = await genstore(["recover", "edit1", "nope1", "--json"], env);
    expect(json.code).toBe(7);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({ mode: "ids", exitCode: 7, summary: "2 predictions: 1 already stored, 1 unknown." });
    expect(doc.items.map((i: { predictionId: string; state: string }) => [i.predictionId, i.state])).toEqual([
      ["edit1", "unchanged"],
      ["nope1", "unknown"],
    ]);
    expect(doc.items[0].stored).toEqual([]);
    expect([...doc.items[0].alreadyStored].sort()).toEqual([
      expect.stringMatching(/^edited\/u1\/\w+_0\.png$/),
      expect.stringMatching(/^thumbnails\/edited\/u1\/\w+_0\.webp$/),
    ]);

    const refused = await genstore(["recover", "edit1"], { ...env, REPLICATE_API_TOKEN: "r8_wrong" });
    expect(refused.code).toBe(6);
    expect(refused.stderr).toContain("error: REPLICATE_API_TOKEN was refused by the Replicate API");
    expect(refused.stderr).not.toMatch(/\n\s+at /);

    const unsafe = await genstore(["recover", "../x"], env);
    expect(unsafe.code).toBe(8);
    expect(unsafe.stderr).toContain('Refusing prediction id "../x"');
    expect(api.requests.filter((r) => r.path.includes(".."))).toEqual([]);
  });

  it("says the API is unreachable (6) and that the token is missing (3)", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const base = `http://127.0.0.1:${port}/v1`;
    const env = { GENSTORE_HOME: await home(), REPLICATE_API_TOKEN: "r8_x", REPLICATE_API_BASE_URL: base };
    const down = await genstore(["recover", "abc"], env);
    expect(down.code).toBe(6);
    expect(down.stderr).toContain(`Replicate answered ECONNREFUSED for prediction abc; retrying in`);
    expect(down.stderr).toContain(
      `error: Cannot reach the Replicate API at ${base}: connection refused (ECONNREFUSED) (after 5 attempts).`,
    );
    const missing = await genstore(["recover", "abc"], { GENSTORE_HOME: env.GENSTORE_HOME });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain("Missing configuration: REPLICATE_API_TOKEN.");
  });

  it("--pending --watch stops cleanly on Ctrl-C with exit code 130 and shows where it was", async () => {
    const { api } = await servers();
    api.add(fakePrediction({ id: "run1", status: "processing", output: null }));
    const dir = await home();
    const pglite = await PGlite.create({ dataDir: path.join(dir, "db") });
    await pglite.query(
      `INSERT INTO genstore."Generation" (id, "userId", prompt, status, "replicateId", "updatedAt") VALUES ('g1', 'u1', 'a fox', 'processing', 'run1', now())`,
    );
    await pglite.close();
    const child = spawn(process.execPath, [bin, "recover", "--pending", "--watch", "--interval", "300s"], {
      env: cleanEnv({ GENSTORE_HOME: dir, REPLICATE_API_TOKEN: api.token, REPLICATE_API_BASE_URL: api.url }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    onTestFinished(() => void child.kill("SIGKILL"));
    // Without a terminal, each --watch round is one line on stderr: the first pass is over.
    await waitFor(() => stderr.includes("still running (round 1; Ctrl-C stops)"), undefined, "the first --watch round");
    expect(api.polls("run1")).toBe(1);
    const signalled = Date.now();
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    // It stopped waiting at once: the wait was 5 minutes.
    expect(Date.now() - signalled).toBeLessThan(120_000);
    expect(stdout).toMatch(/run1\s+│ processing │ still running/);
    expect(stdout).toContain("1 prediction: 1 still running.");
    expect(stderr).toContain("error: Interrupted.");
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it.runIf(databaseKinds.includes("postgres"))("recovers into PostgreSQL through the binary", async () => {
    const { api, files: out } = await servers();
    addPredictions(api, out);
    const { db, config } = await createTestDatabase("postgres");
    const env = {
      GENSTORE_HOME: await tempDir("genstore-home-"),
      ...databaseEnv(config),
      REPLICATE_API_TOKEN: api.token,
      REPLICATE_API_BASE_URL: api.url,
      GENSTORE_OUTPUT_HOSTS: out.hostEntry,
    };
    const result = await genstore(["recover", "edit1", "gone1"], env);
    expect(result.code).toBe(7);
    expect(result.stdout).toContain("2 predictions: 1 stored, 1 expired.");
    expect(await countGenerations(db)).toBe(2);
  });
});
