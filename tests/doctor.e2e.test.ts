import { spawn } from "node:child_process";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { FINDING_KINDS, type Finding, type FindingKind } from "../src/core/doctor.ts";
import type { Database } from "../src/db/client.ts";
import { runDoctor, type DoctorInput, type RepairOutcome } from "../src/jobs/doctor.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { createReplicateClient } from "../src/replicate/client.ts";
import { createLocalStorage } from "../src/storage/local.ts";
import type { Storage } from "../src/storage/types.ts";
import { bin, cleanEnv, genstore, migratedHome } from "./support/cli.ts";
import { createTestDatabase, databaseEnv, databaseKinds } from "./support/db.ts";
import { insertAgedDeliveries } from "./support/delivery-rows.ts";
import { fakePrediction, startFakeReplicate, type FakeReplicate } from "./support/fake-replicate.ts";
import { generation, insertGenerations } from "./support/generations.ts";
import { startOutputServer, type OutputServer } from "./support/output-server.ts";
import {
  pipelineDeps,
  storageKinds,
  testS3Bucket,
  testStorage,
  type StorageKind,
} from "./support/pipeline-fixtures.ts";
import { waitFor } from "./support/wait.ts";

// doctor end to end: every class of finding seeded on purpose, on both storages and both
// databases (in process, through runDoctor), then the binary for its outputs and exit codes,
// and a repair killed with SIGKILL in the middle of a download.

const HOUR = 3_600_000;

async function servers(): Promise<{ api: FakeReplicate; out: OutputServer }> {
  const [api, out] = await Promise.all([startFakeReplicate(), startOutputServer()]);
  onTestFinished(async () => {
    await Promise.all([api.close(), out.close()]);
  });
  return { api, out };
}

/** One row per class of finding (and a healthy one), their objects, predictions and a failed delivery. */
async function seed(db: Database, storage: Storage, api: FakeReplicate, out: OutputServer): Promise<void> {
  const png = out.bytes.png;
  const mp4 = out.bytes.mp4;
  const output = (key: string, size: number) => ({ key, size, kind: "output", contentType: null, etag: "" });
  const thumb = (key: string) => ({ key, kind: "thumbnail" });
  const done = { status: "succeeded", operationType: "generation", storageContext: "generated", userId: "u1" };
  await Promise.all([
    storage.put("generated/u1/gA_0.png", png),
    storage.put("thumbnails/generated/u1/gA_0.webp", Buffer.from("thumb")),
    storage.put("generated/u1/gA_1.png", png), // unreferenced, names gA: --adopt records it
    storage.put("edited/u9/nobody_0.png", png), // unreferenced, no such generation
    storage.put("generated/u1/gD_0.mp4", Buffer.from("not the recorded size")),
    storage.put("generated/u1/gE_0.png", png),
    storage.put("u1/legacy.png", png),
  ]);
  await insertGenerations(db, [
    {
      ...done,
      id: "gA",
      storageKeys: [output("generated/u1/gA_0.png", png.length), thumb("thumbnails/generated/u1/gA_0.webp")],
    },
    { ...done, id: "gB", replicateId: "pmissing", storageKeys: [output("generated/u1/gB_0.mp4", mp4.length)] },
    { ...done, id: "gC", replicateId: "pgone", storageKeys: [output("generated/u1/gC_0.mp4", 100)] },
    { ...done, id: "gD", storageKeys: [output("generated/u1/gD_0.mp4", 5)] },
    { ...done, id: "gE", storageKeys: [output("generated/u1/gE_0.png", png.length)] },
    { ...done, id: "gF", replicateId: "pnever", imageUrls: [out.url("/png/out-0.png")], storageKeys: [] },
    {
      id: "gG",
      userId: "u1",
      status: "processing",
      replicateId: "pstuck",
      prompt: "a fox",
      createdAt: new Date(Date.now() - 2 * HOUR),
    },
    { ...done, id: "gH", storageKeys: ["u1/legacy.png"] },
    { ...done, id: "gI", operationType: "edit", storageContext: "generated", storageKeys: [] },
  ]);
  api.add(
    fakePrediction({ id: "pmissing", input: { prompt: "a fox", user_id: "u1" }, output: [out.url("/mp4/out-0.mp4")] }),
    fakePrediction({
      id: "pgone",
      input: { prompt: "a fox", user_id: "u1" },
      output: [out.url("/status/404/out-0.mp4")],
    }),
    fakePrediction({ id: "pnever", input: { prompt: "a fox", user_id: "u1" }, output: [out.url("/png/out-0.png")] }),
    fakePrediction({ id: "pstuck", input: { prompt: "a fox", user_id: "u1" }, output: [out.url("/mp4/out-1.mp4")] }),
  );
  await insertAgedDeliveries((sql, params) => db.query(sql, ...params), {
    state: "failed",
    count: 1,
    ageDays: 1,
    prefix: "wh_",
  });
}

/** What a scan of the seed finds, by class. */
const SEEDED: Partial<Record<FindingKind, number>> = {
  "missing-object": 2, // gB (recoverable), gC (expired: recorded as lost)
  "size-mismatch": 1, // gD
  "unreferenced-object": 2, // gA_1 (adoptable), edited/u9/nobody_0.png
  "missing-thumbnail": 1, // gE
  "never-stored": 1, // gF
  stuck: 1, // gG
  "off-layout": 1, // gH
  "failed-delivery": 1,
  "context-mismatch": 1, // gI
};
/** What no repair touches: a second run after --repair reports exactly these. */
const LEFT: Partial<Record<FindingKind, number>> = {
  "size-mismatch": 1,
  "unreferenced-object": 1,
  "off-layout": 1,
  "context-mismatch": 1,
  lost: 1,
};
const counts = (partial: Partial<Record<FindingKind, number>>) =>
  Object.fromEntries(FINDING_KINDS.map((k) => [k, partial[k] ?? 0]));

const cases = databaseKinds.flatMap((db) => storageKinds.map((storage) => [db, storage] as const));

describe.each(cases)("doctor on %s with %s storage", (dbKind, storageKind: StorageKind) => {
  it("reports each class of finding, repairs what the table says, and a second run reports only the rest", async () => {
    const { api, out } = await servers();
    const { db } = await createTestDatabase(dbKind);
    const storage = await testStorage(storageKind);
    await seed(db, storage, api, out);
    const run = async (input: Partial<DoctorInput> = {}) => {
      const findings: Finding[] = [];
      const repairs: RepairOutcome[] = [];
      const result = await runDoctor(
        { scope: {}, stuckAfterMs: HOUR, ...input },
        {
          db,
          storage,
          pipeline: pipelineDeps(db, storage, [out.hostEntry]),
          ingest: ingestPrediction,
          replicate: createReplicateClient({
            token: api.token,
            baseUrl: api.url,
            retry: { baseDelayMs: 5, maxDelayMs: 20 },
          }),
          onFinding: (f) => findings.push(f),
          onRepair: (r) => repairs.push(r),
        },
      );
      return { result, findings, repairs };
    };

    const scan = await run();
    expect(scan.result.counts).toEqual(counts(SEEDED));
    expect(scan.result.remaining).toBe(11);
    expect(scan.findings.find((f) => f.kind === "size-mismatch")).toMatchObject({
      key: "generated/u1/gD_0.mp4",
      expectedSize: 5,
    });
    expect(scan.findings.filter((f) => f.kind === "unreferenced-object").map((f) => f.key)).toEqual([
      "edited/u9/nobody_0.png",
      "generated/u1/gA_1.png",
    ]);

    const dry = await run({ repair: true, dryRun: true, adopt: true, retryFailed: true });
    expect(dry.result.dryRun).toBe(true);
    expect(dry.repairs.filter((r) => r.state === "planned").length).toBeGreaterThanOrEqual(7);
    expect((await run()).result.counts).toEqual(counts(SEEDED)); // the dry run changed nothing

    const repair = await run({ repair: true, adopt: true, retryFailed: true });
    const states = Object.fromEntries(
      repair.repairs.map((r) => [`${r.kind} ${r.key ?? r.generationId ?? r.deliveryId}`, r.state]),
    );
    expect(states).toMatchObject({
      "missing-object generated/u1/gB_0.mp4": "repaired",
      "missing-object generated/u1/gC_0.mp4": "lost",
      "missing-thumbnail generated/u1/gE_0.png": "repaired",
      "never-stored gF": "repaired",
      "stuck gG": "repaired",
      "unreferenced-object generated/u1/gA_1.png": "repaired",
      "unreferenced-object edited/u9/nobody_0.png": "not-repaired",
      "failed-delivery wh_1": "repaired",
    });
    expect(repair.result.remaining).toBe(4);
    expect((await storage.head("generated/u1/gB_0.mp4"))?.size).toBe(out.bytes.mp4.length);
    expect(await storage.head("thumbnails/generated/u1/gE_0.webp")).toBeDefined();
    expect((await generation(db, { id: "gG" })).status).toBe("succeeded");
    expect((await generation(db, { id: "gC" })).metadata).toMatchObject({
      lostObjects: [{ key: "generated/u1/gC_0.mp4" }],
    });
    const adopted = await generation(db, { id: "gA" });
    expect(adopted.storageKeys.map((e) => (e as { key: string }).key)).toContain("generated/u1/gA_1.png");
    const [delivery] = await db.query<{ state: string }>(`SELECT state FROM "WebhookDelivery" WHERE id = 'wh_1'`);
    expect(delivery?.state).toBe("pending");
    expect(await storage.head("edited/u9/nobody_0.png")).toBeDefined(); // never deletes

    const again = await run();
    expect(again.result.counts).toEqual(counts(LEFT));
    expect(again.result.remaining).toBe(4);
  });
});

describe("the binary", () => {
  const home = () => migratedHome("genstore-doctor-");

  it("prints a table, --json, --ndjson, narrows the scan, and exits 10 while problems remain, 0 once none do", async () => {
    const dir = await home();
    const storage = createLocalStorage(path.join(dir, "storage"));
    const clean = await genstore(["doctor"], { GENSTORE_HOME: dir });
    expect(clean.code).toBe(0);
    expect(clean.stdout).toContain("everything is accounted for.");

    await storage.put("generated/u1/orphan_0.png", Buffer.from("x"));
    await storage.put("edited/u2/orphan_0.png", Buffer.from("y"));
    const table = await genstore(["doctor"], { GENSTORE_HOME: dir });
    expect(table.code).toBe(10);
    expect(table.stdout).toMatch(/unreferenced object\s*│\s*2/);
    expect(table.stdout).toContain("generated/u1/orphan_0.png: 1 bytes that no row lists");
    expect(table.stderr).toContain("error: 2 problems remain.");

    const json = await genstore(["doctor", "--json"], { GENSTORE_HOME: dir });
    expect(json.code).toBe(10);
    const document = JSON.parse(json.stdout) as {
      findings: Finding[];
      counts: Record<string, number>;
      remaining: number;
    };
    expect(document.findings.map((f) => f.key)).toEqual(["edited/u2/orphan_0.png", "generated/u1/orphan_0.png"]);
    expect(document).toMatchObject({ remaining: 2, counts: { "unreferenced-object": 2 } });

    const ndjson = await genstore(["doctor", "--ndjson", "--context", "edited"], { GENSTORE_HOME: dir });
    const lines = ndjson.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; key?: string });
    expect(lines.map((l) => [l.type, l.key])).toEqual([
      ["finding", "edited/u2/orphan_0.png"],
      ["summary", undefined],
    ]);

    const bad = await genstore(["doctor", "--stuck-after", "soon", "--json"], { GENSTORE_HOME: dir });
    expect([bad.code, bad.stdout]).toEqual([2, ""]);
    expect((await genstore(["doctor", "--user", "../x"], { GENSTORE_HOME: dir })).code).toBe(8);
    expect((await genstore(["doctor", "--adopt"], { GENSTORE_HOME: dir })).code).toBe(2);
  });

  it.runIf(process.env.TEST_DATABASE_URL)("scans PostgreSQL and the S3 server", async () => {
    const { db, config } = await createTestDatabase("postgres");
    const { storage, env: s3Env } = await testS3Bucket("genstore-doctor-");
    await storage.put("videos/u1/gv.mp4", Buffer.from("video"));
    await insertGenerations(db, [
      { id: "gv", status: "succeeded", operationType: "video", storageKeys: [{ key: "videos/u1/gv.mp4", size: 5 }] },
      {
        id: "gw",
        status: "succeeded",
        replicateId: "pw",
        operationType: "video",
        storageKeys: [{ key: "videos/u1/gw.mp4", size: 5 }],
      },
    ]);
    const env = {
      ...databaseEnv(config),
      ...s3Env,
    };
    const result = await genstore(["doctor", "--ndjson"], env);
    expect(result.code).toBe(10);
    expect(result.stdout).toContain('"kind":"missing-object","key":"videos/u1/gw.mp4"');
    // Without a token, --repair says what it lacks rather than record a loss it cannot know.
    const repair = await genstore(["doctor", "--repair"], env);
    expect(repair.code).toBe(10);
    expect(repair.stdout).toContain("needs REPLICATE_API_TOKEN");
  });

  it.runIf(process.env.TEST_DATABASE_URL)(
    "a repair killed with SIGKILL during a download loses nothing; the rerun finishes it",
    async () => {
      const { api, out } = await servers();
      const { db, config } = await createTestDatabase("postgres");
      const dir = await home();
      let slow = true;
      out.route("/slow/out-0.mp4", (_req, res) => {
        res.writeHead(200, { "content-type": "video/mp4", "content-length": out.bytes.mp4.length + 1000 });
        res.write(out.bytes.mp4);
        if (!slow) res.end(Buffer.alloc(1000));
      });
      api.add(fakePrediction({ id: "pslow", input: { prompt: "a fox" }, output: [out.url("/slow/out-0.mp4")] }));
      await insertGenerations(db, [
        {
          id: "gs",
          userId: "u1",
          status: "succeeded",
          replicateId: "pslow",
          operationType: "generation",
          storageKeys: [{ key: "generated/u1/gs_0.mp4", size: out.bytes.mp4.length + 1000, kind: "output" }],
        },
      ]);
      const env = {
        ...databaseEnv(config),
        GENSTORE_HOME: dir,
        REPLICATE_API_TOKEN: api.token,
        REPLICATE_API_BASE_URL: api.url,
        GENSTORE_OUTPUT_HOSTS: out.hostEntry,
      };
      const child = spawn(process.execPath, [bin, "doctor", "--repair"], { env: cleanEnv(env), stdio: "ignore" });
      const exited = new Promise((resolve) => child.on("exit", resolve));
      onTestFinished(() => void (child.exitCode === null && child.kill("SIGKILL")));
      await waitFor(() => out.count("/slow/") > 0, undefined, "the repair to start its download");
      child.kill("SIGKILL");
      await exited;
      const storage = createLocalStorage(path.join(dir, "storage"));
      expect(await storage.head("generated/u1/gs_0.mp4")).toBeUndefined(); // nothing half-written
      expect((await generation(db, { id: "gs" })).storageKeys).toHaveLength(1);

      slow = false;
      const rerun = await genstore(["doctor", "--repair"], env);
      expect(rerun.stdout).toMatch(/missing object\s*│\s*1\s*│\s*1/);
      expect(rerun.code).toBe(0);
      expect((await storage.head("generated/u1/gs_0.mp4"))?.size).toBe(out.bytes.mp4.length + 1000);
      expect((await genstore(["doctor"], env)).code).toBe(0);
    },
  );
});
