import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { describe, expect, it, onTestFinished } from "vitest";
import { createLocalStorage } from "../src/storage/local.ts";
import { bin, cleanEnv, genstore } from "./support/cli.ts";
import { createTestDatabase, databaseEnv, pgliteTemplate } from "./support/db.ts";
import { freePort } from "./support/moto.ts";
import { bucketContents, insertRows, putObjects, type Row } from "./support/migrate-keys-fixtures.ts";
import { generations, keyMoves } from "./support/generations.ts";
import { testS3Bucket } from "./support/pipeline-fixtures.ts";

// genstore migrate-keys through the real binary, as an operator runs it.

const rows: Row[] = [
  { id: "g1", userId: "u1", prompt: "a fox", storageKeys: ["u1/a.png", "thumbnails/u1/a.webp"] },
  { id: "g2", userId: "u2", prompt: "[EDITED] a fox", storageKeys: [{ key: "generations/u2/b.jpg", kind: "output" }] },
];
const objects = ["u1/a.png", "thumbnails/u1/a.webp", "generations/u2/b.jpg", "u9/lost.png", "a/b/c/d.png"];

/** A GENSTORE_HOME with an embedded database holding rows and a local storage holding objects. */
async function home() {
  const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-home-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const pglite = await PGlite.create({ dataDir: path.join(dir, "db"), loadDataDir: await pgliteTemplate() });
  const { databaseFromPGlite } = await import("../src/db/client.ts");
  const db = await databaseFromPGlite(pglite, "e2e");
  await insertRows(db, rows);
  await db.close();
  const storage = createLocalStorage(path.join(dir, "storage"));
  await putObjects(storage, objects);
  return { dir, storage };
}

describe("genstore migrate-keys (the binary)", () => {
  it("prints the plan with --dry-run and changes nothing, then moves with --json", async () => {
    const { dir, storage } = await home();
    const before = await bucketContents(storage);

    const dry = await genstore(["migrate-keys", "--dry-run"], { GENSTORE_HOME: dir });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain("move     u1/a.png → generated/u1/g1_0.png");
    expect(dry.stdout).toContain("move     generations/u2/b.jpg → edited/u2/g2_0.jpg");
    expect(dry.stdout).toContain("orphan   u9/lost.png (no row references it)");
    expect(dry.stdout).toContain("unknown  a/b/c/d.png (matches no known legacy layout)");
    expect(dry.stdout).toContain("Dry run of 5 objects: would move 3 objects (generated 2, edited 1)");
    expect(await bucketContents(storage)).toEqual(before);

    const dryJson = await genstore(["migrate-keys", "--dry-run", "--json"], { GENSTORE_HOME: dir });
    expect(dryJson.code).toBe(0);
    const plan = JSON.parse(dryJson.stdout);
    expect(plan).toMatchObject({ dryRun: true, listed: 5, plan: { moves: 3, orphans: 1, unknown: 1 } });
    expect(plan.decisions).toHaveLength(5);
    expect(plan.decisions).toContainEqual({
      action: "move",
      sourceKey: "u1/a.png",
      targetKey: "generated/u1/g1_0.png",
      context: "generated",
      kind: "output",
      generationId: "g1",
      index: 0,
    });
    expect(plan.decisions).toContainEqual({ action: "orphan", sourceKey: "u9/lost.png", pattern: "user-flat" });

    const real = await genstore(["migrate-keys", "--json"], { GENSTORE_HOME: dir });
    expect(real.code).toBe(0);
    expect(real.stderr).toBe("");
    expect(JSON.parse(real.stdout)).toMatchObject({
      dryRun: false,
      moved: 3,
      failed: 0,
      orphans: [{ sourceKey: "u9/lost.png" }],
    });
    expect(Object.keys(await bucketContents(storage)).sort()).toEqual(
      [
        "a/b/c/d.png",
        "edited/u2/g2_0.jpg",
        "generated/u1/g1_0.png",
        "thumbnails/generated/u1/g1_0.webp",
        "u9/lost.png",
      ].sort(),
    );
    const listed = JSON.parse((await genstore(["list", "--json"], { GENSTORE_HOME: dir })).stdout) as {
      id: string;
      storageKeys: { key: string }[];
    }[];
    expect(Object.fromEntries(listed.map((r) => [r.id, r.storageKeys.map((e) => e.key)]))).toEqual({
      g1: ["generated/u1/g1_0.png", "thumbnails/generated/u1/g1_0.webp"],
      g2: ["edited/u2/g2_0.jpg"],
    });

    const again = await genstore(["migrate-keys"], { GENSTORE_HOME: dir });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("Moved 0 objects out of 5 objects listed");
  });

  it("with --dry-run --json and the storage unreachable: exit code 5 and nothing on stdout", async () => {
    const { dir } = await home();
    const unreachable = `http://127.0.0.1:${await freePort()}`;
    const result = await genstore(["migrate-keys", "--dry-run", "--json"], {
      GENSTORE_HOME: dir,
      GENSTORE_STORAGE: "aws",
      S3_BUCKET: "genstore-unreachable",
      AWS_ENDPOINT_URL_S3: unreachable,
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
      AWS_REGION: "us-east-1",
    });
    expect(result.code).toBe(5);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(`Cannot reach S3 at ${unreachable} (ECONNREFUSED)`);
  });

  it("answers a bad flag with one line and exit code 2, and a failed move with exit code 7", async () => {
    const { dir, storage } = await home();
    const bad = await genstore(["migrate-keys", "--orphans-to", "elsewhere"], { GENSTORE_HOME: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Invalid option: --orphans-to");

    await storage.put("edited/u2/g2_0.jpg", Buffer.from("another object"));
    const partial = await genstore(["migrate-keys"], { GENSTORE_HOME: dir });
    expect(partial.code).toBe(7);
    expect(partial.stdout).toContain(
      "failed   generations/u2/b.jpg → edited/u2/g2_0.jpg: the target exists with different content",
    );
    expect(partial.stderr).toContain("1 object could not be moved");
  });

  it.runIf(process.env.TEST_DATABASE_URL)("moves on PostgreSQL and the S3 server", async () => {
    const { config, db } = await createTestDatabase("postgres");
    await insertRows(db, rows);
    const { storage, env: s3Env } = await testS3Bucket("genstore-mk-");
    await putObjects(storage, objects);
    const env = {
      ...databaseEnv(config),
      ...s3Env,
    };
    const result = await genstore(["migrate-keys", "--json", "--concurrency", "4"], env);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ provider: "aws", moved: 3, failed: 0 });
    expect(Object.keys(await bucketContents(storage))).toContain("edited/u2/g2_0.jpg");
  });

  it.runIf(process.env.TEST_DATABASE_URL)(
    "is finished by a rerun after being killed with SIGKILL mid-run, and after Ctrl-C (exit 130)",
    async () => {
      const { config, db } = await createTestDatabase("postgres");
      const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-kill-"));
      onTestFinished(() => rm(dir, { recursive: true, force: true }));
      const storage = createLocalStorage(path.join(dir, "storage"));
      const n = 400;
      const key = (i: number) => `u${i % 7}/img${i}.png`;
      await putObjects(
        storage,
        Array.from({ length: n }, (_, i) => key(i)),
      );
      await insertRows(
        db,
        Array.from({ length: n }, (_, i) => ({
          id: `g${String(i).padStart(4, "0")}`,
          userId: `u${i % 7}`,
          prompt: i % 2 ? "[EDITED] x" : "y",
          storageKeys: [key(i)],
        })),
      );
      const settings = { ...databaseEnv(config), GENSTORE_HOME: dir };
      // Done marks are written per listing page; recorded moves show progress object by object.
      const doneCount = async () => (await keyMoves(db, { step: ["done"] })).length;
      const progressed = async () => (await keyMoves(db, { step: ["recorded", "done"] })).length;

      for (const signal of ["SIGKILL", "SIGINT"] as const) {
        const before = await progressed();
        const child = spawn(process.execPath, [bin, "migrate-keys", "--concurrency", "4"], {
          env: cleanEnv(settings),
          stdio: "ignore",
        });
        const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
        while ((await progressed()) < before + 40 && child.exitCode === null)
          await new Promise((r) => setTimeout(r, 20));
        child.kill(signal);
        const code = await exited;
        if (signal === "SIGINT") expect(code).toBe(130);
        expect(await progressed()).toBeLessThan(n);
      }
      const rerun = await genstore(["migrate-keys", "--json"], settings);
      expect(rerun.code).toBe(0);
      expect(JSON.parse(rerun.stdout)).toMatchObject({ failed: 0 });
      const bucket = await bucketContents(storage);
      const rows = await generations(db);
      expect(Object.keys(bucket)).toHaveLength(n);
      for (const row of rows) {
        const [entry] = row.storageKeys as { key: string }[];
        expect(entry!.key).toMatch(/^(generated|edited)\/u\d\/g\d{4}_0\.png$/);
        expect(bucket[entry!.key]).toBe(`body of ${key(Number(row.id.slice(1)))}`);
      }
      expect(await doneCount()).toBe(n);
    },
  );
});
