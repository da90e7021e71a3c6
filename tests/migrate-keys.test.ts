import { describe, expect, it } from "vitest";
import { Interrupted } from "../src/errors.ts";
import type { MigrateKeysEvent, MigrateKeysStep } from "../src/jobs/migrate-keys.ts";
import { databaseKinds } from "./support/db.ts";
import {
  bucketContents,
  databaseContents,
  insertRows,
  keysOf,
  putObjects,
  setup,
  type ProviderKind,
  type Row,
} from "./support/migrate-keys-fixtures.ts";
import { generation, insertKeyMove, keyMoves } from "./support/generations.ts";

// migrate-keys against real servers: PostgreSQL (and the embedded PGlite) and the S3 test
// server (and a local folder). Bodies are "body of <original key>", so where each byte
// ended up can be checked after any crash.

const body = (key: string) => `body of ${key}`;

/** Each legacy pattern, rows with and without operationType, a key already in the layout, an orphan, unknown keys. */
const rows: Row[] = [
  { id: "g0", userId: "u0", prompt: "done already", storageKeys: [{ key: "generated/u0/g0_0.png", kind: "output" }] },
  { id: "g1", userId: "u1", prompt: "a fox", storageKeys: ["u1/a.png", "thumbnails/u1/a.webp"] },
  {
    id: "g2",
    userId: "u2",
    prompt: "[EDITED] a fox",
    storageKeys: [{ key: "generations/u2/b.jpg", kind: "output", contentType: "image/jpeg" }],
  },
  {
    id: "g3",
    userId: "u3",
    prompt: "[EDITED] but the column says upscale",
    operationType: "upscale",
    storageKeys: ["uploads/c.png"],
  },
  {
    id: "g4",
    userId: "u4",
    prompt: "[VIDEO] a run",
    storageKeys: ["uploads/u4/clip.mp4", { key: "thumbs/u4/clip.jpg", kind: "thumbnail" }],
  },
  {
    id: "g5",
    userId: "u5",
    prompt: "plain prompt, video column",
    operationType: "video",
    storageKeys: ["generations/u5/v.webm"],
  },
];
const moves: Record<string, string> = {
  "u1/a.png": "generated/u1/g1_0.png",
  "thumbnails/u1/a.webp": "thumbnails/generated/u1/g1_0.webp",
  "generations/u2/b.jpg": "edited/u2/g2_0.jpg",
  "uploads/c.png": "upscaled/u3/g3_0.png",
  "uploads/u4/clip.mp4": "videos/u4/g4.mp4",
  "thumbs/u4/clip.jpg": "thumbnails/videos/u4/g4_0.jpg",
  "generations/u5/v.webm": "videos/u5/g5.webm",
};
const orphan = "u9/lost.png";
const unknownKeys = ["a/b/c/d.png", "generations/stray.png"];
const legacyKeys = Object.keys(moves);
const allKeys = [...legacyKeys, "generated/u0/g0_0.png", orphan, ...unknownKeys];

/** The bucket once every referenced legacy object has moved (the orphan and unknown keys stay). */
function expectedBucket(extra: Record<string, string> = {}) {
  return {
    "generated/u0/g0_0.png": body("generated/u0/g0_0.png"),
    ...Object.fromEntries(legacyKeys.map((key) => [moves[key], body(key)])),
    [orphan]: body(orphan),
    ...Object.fromEntries(unknownKeys.map((key) => [key, body(key)])),
    ...extra,
  };
}

const combos: [string, ProviderKind][] = databaseKinds.flatMap((kind) =>
  (["local", "s3"] as const).map((p) => [kind, p] as [string, ProviderKind]),
);

async function seeded(kind: string, provider: ProviderKind) {
  const env = await setup(kind as never, provider);
  await putObjects(env.storage, allKeys);
  await insertRows(env.db, rows);
  return env;
}

/** Rows point only at objects that exist, and each object holds the bytes its row expects. */
async function expectConsistent(env: Awaited<ReturnType<typeof seeded>>) {
  const bucket = await bucketContents(env.storage);
  expect(bucket).toEqual(expectedBucket());
  const { rows: stored, journal } = await databaseContents(env.db);
  const byId = Object.fromEntries(stored.map((r) => [r.id, keysOf(r.storageKeys)]));
  for (const row of rows) {
    expect(byId[row.id]).toEqual(keysOf(row.storageKeys).map((key) => moves[key] ?? key));
  }
  for (const keys of Object.values(byId)) for (const key of keys) expect(bucket).toHaveProperty([key]);
  expect(journal.map((j) => [j.sourceKey, j.targetKey, j.step, j.error])).toEqual(
    legacyKeys.sort().map((key) => [key, moves[key], "done", null]),
  );
}

describe.each(combos)("migrate-keys on %s with %s storage", (kind, provider) => {
  it("moves each legacy pattern into its context folder, updates the rows, and reports orphans and unknown keys", async () => {
    const env = await seeded(kind, provider);
    const events: MigrateKeysEvent[] = [];
    const result = await env.run({}, { onEvent: (e) => events.push(e) });
    expect(result).toMatchObject({
      dryRun: false,
      listed: allKeys.length,
      moved: legacyKeys.length,
      failed: 0,
      plan: {
        moves: 7,
        byContext: { generated: 2, edited: 1, upscaled: 1, videos: 3 },
        orphans: 1,
        unknown: 2,
        skipped: 1,
      },
      orphans: [{ sourceKey: orphan }],
    });
    expect(result.unknown.map((u) => u.sourceKey).sort()).toEqual([...unknownKeys].sort());
    await expectConsistent(env);
    // Entries keep their other fields and gain the target's size and etag.
    const g2 = await generation(env.db, { id: "g2" });
    expect(g2.storageKeys).toEqual([
      {
        key: "edited/u2/g2_0.jpg",
        kind: "output",
        contentType: "image/jpeg",
        size: body("generations/u2/b.jpg").length,
        etag: expect.any(String),
      },
    ]);
    const g1 = await generation(env.db, { id: "g1" });
    expect(g1.storageKeys).toMatchObject([
      { key: "generated/u1/g1_0.png", kind: "output" },
      { key: "thumbnails/generated/u1/g1_0.webp", kind: "thumbnail" },
    ]);
    expect(events.filter((e) => e.type === "plan" && e.plan.action === "move")).toHaveLength(7);

    // A second run finds nothing to do and copies nothing.
    const again = await env.run();
    expect(again).toMatchObject({ moved: 0, failed: 0, plan: { moves: 0, orphans: 1, unknown: 2 } });
    expect([...env.copies.values()].every((n) => n === 1)).toBe(true);
  });

  it("--dry-run prints the plan and changes nothing, not even the journal", async () => {
    const env = await seeded(kind, provider);
    const [bucketBefore, dbBefore] = [await bucketContents(env.storage), await databaseContents(env.db)];
    const events: MigrateKeysEvent[] = [];
    const result = await env.run({ dryRun: true }, { onEvent: (e) => events.push(e) });
    expect(result).toMatchObject({ dryRun: true, moved: 0, plan: { moves: 7, orphans: 1, unknown: 2, skipped: 1 } });
    const planned = Object.fromEntries(
      events.flatMap((e) =>
        e.type === "plan" && e.plan.action === "move" ? [[e.plan.sourceKey, e.plan.targetKey]] : [],
      ),
    );
    expect(planned).toEqual(moves);
    expect(await bucketContents(env.storage)).toEqual(bucketBefore);
    expect(await databaseContents(env.db)).toEqual(dbBefore);
    expect(dbBefore.journal).toEqual([]);
    expect(env.copies.size).toBe(0);
  });

  it("moves orphans with --orphans-to, and a rerun does not report them again", async () => {
    const env = await seeded(kind, provider);
    const result = await env.run({ orphansTo: "generated" });
    expect(result).toMatchObject({ moved: 8, plan: { orphans: 0, orphansMoved: 1 } });
    expect(await bucketContents(env.storage)).toEqual(
      Object.fromEntries(
        Object.entries(expectedBucket({ "generated/u9/lost.png": body(orphan) })).filter(([key]) => key !== orphan),
      ),
    );
    const again = await env.run({ orphansTo: "generated" });
    expect(again).toMatchObject({ moved: 0, plan: { orphans: 0, unknown: 2, moves: 0 } });
  });

  it("--keep-source copies and updates rows but leaves the legacy objects; a later run without it deletes them", async () => {
    const env = await seeded(kind, provider);
    const kept = await env.run({ keepSource: true });
    expect(kept).toMatchObject({ moved: 7, keepSource: true });
    const bucket = await bucketContents(env.storage);
    expect(bucket).toEqual(expectedBucket(Object.fromEntries(legacyKeys.map((key) => [key, body(key)]))));
    const g4 = await generation(env.db, { id: "g4" });
    expect(keysOf(g4.storageKeys)).toEqual(["videos/u4/g4.mp4", "thumbnails/videos/u4/g4_0.jpg"]);

    const rerunKept = await env.run({ keepSource: true });
    expect(rerunKept).toMatchObject({ moved: 0, alreadyDone: 7 });
    const cleanup = await env.run();
    expect(cleanup).toMatchObject({ moved: 7, resumed: 7, failed: 0 });
    await expectConsistent(env);
    expect([...env.copies.values()].every((n) => n === 1)).toBe(true);
  });
});

const crashCombos: [string, ProviderKind][] = databaseKinds.includes("postgres")
  ? [
      ["embedded", "local"],
      ["postgres", "s3"],
    ]
  : [["embedded", "local"]];

describe.each(crashCombos)("migrate-keys after a crash (%s, %s storage)", (crashKind, crashProvider) => {
  const steps: MigrateKeysStep[] = ["journal", "copy", "record", "delete", "done"];

  it.each(steps)(
    "a crash right after the %s step of one object's move is finished by a rerun, with nothing copied twice",
    async (step) => {
      const env = await seeded(crashKind, crashProvider);
      const victim = "generations/u2/b.jpg";
      const crash = new Error(`crash after ${step}`);
      await expect(
        env.run(
          { concurrency: 1 },
          {
            afterStep: (s, key) => {
              if (s === step && key === victim) throw crash;
            },
          },
        ),
      ).rejects.toBe(crash);
      // Whatever the step, no row points at a missing object and no byte is lost.
      const bucket = await bucketContents(env.storage);
      const { rows: stored } = await databaseContents(env.db);
      for (const row of stored) for (const key of keysOf(row.storageKeys)) expect(bucket).toHaveProperty([key]);
      expect(Object.values(bucket)).toEqual(expect.arrayContaining(allKeys.map(body)));

      const rerun = await env.run();
      expect(rerun.failed).toBe(0);
      await expectConsistent(env);
      expect(env.copies.get(victim)).toBe(1);
    },
  );

  it("continues a move the journal records as copied (an older run wrote that step) without copying again", async () => {
    const env = await seeded(crashKind, crashProvider);
    const source = "uploads/c.png";
    const target = moves[source]!;
    const copied = await env.storage.copy(source, target);
    await insertKeyMove(env.db, {
      sourceKey: source,
      targetKey: target,
      generationId: "g3",
      step: "copied",
      size: copied.size,
      etag: copied.etag,
    });
    const result = await env.run();
    expect(result).toMatchObject({ moved: 7, resumed: 1, failed: 0 });
    await expectConsistent(env);
    expect(env.copies.get(source)).toBeUndefined();
  });

  it("reports a source the storage refuses to delete; the row already points at the copy, and a rerun deletes it", async () => {
    const env = await seeded(crashKind, crashProvider);
    const victim = "generations/u2/b.jpg";
    env.refusedDeletes.add(victim);
    const result = await env.run();
    expect(result).toMatchObject({
      moved: 6,
      failed: 1,
      failures: [{ sourceKey: victim, targetKey: moves[victim], reason: expect.stringMatching(/AccessDenied/) }],
    });
    const bucket = await bucketContents(env.storage);
    expect(bucket[victim]).toBe(body(victim));
    expect(bucket[moves[victim]!]).toBe(body(victim));
    const g2 = await generation(env.db, { id: "g2" });
    expect(keysOf(g2.storageKeys)).toEqual([moves[victim]]);
    expect(await keyMoves(env.db, { sourceKey: victim }).then((e) => e[0]!)).toMatchObject({
      step: "recorded",
      error: expect.stringMatching(/AccessDenied/),
    });

    env.refusedDeletes.clear();
    const rerun = await env.run();
    expect(rerun).toMatchObject({ moved: 1, resumed: 1, failed: 0 });
    await expectConsistent(env);
    expect(env.copies.get(victim)).toBe(1);
  });

  it("deletes sources in several batches; a crash after one batch's deletes is finished by a rerun", async () => {
    const env = await setup(crashKind as never, crashProvider);
    // 62 sources in one listing page, deleted 25 a request: two whole batches, then the rest.
    const keys = Array.from({ length: 62 }, (_, i) => `u7/img${String(i).padStart(4, "0")}.png`);
    await putObjects(env.storage, keys);
    const victim = keys[30]!;
    const crash = new Error("crash after a delete batch");
    await expect(
      env.run(
        { orphansTo: "generated", concurrency: 8, deleteBatchSize: 25 },
        {
          afterStep: (s, key) => {
            if (s === "delete" && key === victim) throw crash;
          },
        },
      ),
    ).rejects.toBe(crash);
    // The crash came after a whole batch of 25 was deleted, none larger.
    expect(env.deleteRequests).toContain(25);
    expect(Math.max(...env.deleteRequests)).toBe(25);
    const rerun = await env.run({ orphansTo: "generated", deleteBatchSize: 25 });
    expect(rerun.failed).toBe(0);
    const bucket = await bucketContents(env.storage);
    expect(Object.keys(bucket).sort()).toEqual(keys.map((key) => `generated/${key}`).sort());
    for (const key of keys) expect(bucket[`generated/${key}`]).toBe(body(key));
    const { journal } = await databaseContents(env.db);
    expect(journal.filter((j) => j.step === "done")).toHaveLength(keys.length);
    expect([...env.copies.values()].every((n) => n === 1)).toBe(true);
  });

  it("stops with exit code 4 (not a bug report) when the database goes away mid-run", async () => {
    const env = await seeded(crashKind, crashProvider);
    let closed = false;
    const run = env.run(
      { concurrency: 1 },
      {
        afterStep: async (step) => {
          if (step === "copy" && !closed) {
            closed = true;
            await env.db.close();
          }
        },
      },
    );
    await expect(run).rejects.toMatchObject({
      name: "DatabaseError",
      exitCode: 4,
      message: expect.stringMatching(/^Lost .*(closed|ended|terminated|after calling end)/i),
      hint: expect.stringMatching(/run again/),
    });
  });

  it("stops cleanly on Ctrl-C and a rerun finishes the rest", async () => {
    const env = await seeded(crashKind, crashProvider);
    const controller = new AbortController();
    const first = env.run(
      { concurrency: 1 },
      { signal: controller.signal, afterStep: (s) => void (s === "record" && controller.abort()) },
    );
    await expect(first).rejects.toBeInstanceOf(Interrupted);
    await expect(first).rejects.toMatchObject({ exitCode: 130 });
    const rerun = await env.run();
    expect(rerun.failed).toBe(0);
    await expectConsistent(env);
  });

  it("never overwrites a different object at the target: the move fails, the source and the row stay", async () => {
    const env = await seeded(crashKind, crashProvider);
    await env.storage.put("edited/u2/g2_0.jpg", Buffer.from("someone else's bytes"));
    const result = await env.run();
    expect(result).toMatchObject({
      moved: 6,
      movedByContext: { generated: 2, edited: 0, upscaled: 1, videos: 3 },
      failed: 1,
      failures: [{ sourceKey: "generations/u2/b.jpg", targetKey: "edited/u2/g2_0.jpg" }],
    });
    expect(result.failures[0]!.reason).toMatch(/different content/);
    const bucket = await bucketContents(env.storage);
    expect(bucket["edited/u2/g2_0.jpg"]).toBe("someone else's bytes");
    expect(bucket["generations/u2/b.jpg"]).toBe(body("generations/u2/b.jpg"));
    const g2 = await generation(env.db, { id: "g2" });
    expect(keysOf(g2.storageKeys)).toEqual(["generations/u2/b.jpg"]);
    const entry = await keyMoves(env.db, { sourceKey: "generations/u2/b.jpg" }).then((e) => e[0]!);
    expect(entry).toMatchObject({ step: "planned", error: expect.stringMatching(/different content/) });
  });

  it("uses a target that already holds the same bytes without copying again", async () => {
    const env = await seeded(crashKind, crashProvider);
    await env.storage.put("edited/u2/g2_0.jpg", Buffer.from(body("generations/u2/b.jpg")));
    const result = await env.run();
    expect(result).toMatchObject({ moved: 7, failed: 0 });
    await expectConsistent(env);
    expect(env.copies.get("generations/u2/b.jpg")).toBeUndefined();
  });

  it("leaves alone a key two rows reference, and a key whose row names another bucket", async () => {
    const env = await setup(crashKind as never, crashProvider);
    await putObjects(env.storage, ["u1/shared.png", "u1/elsewhere.png"]);
    await insertRows(env.db, [
      { id: "a", userId: "u1", prompt: "x", storageKeys: ["u1/shared.png"] },
      { id: "b", userId: "u1", prompt: "y", storageKeys: ["u1/shared.png"] },
      {
        id: "c",
        userId: "u1",
        prompt: "z",
        storageKeys: ["u1/elsewhere.png"],
        storageProvider: "aws",
        storageBucket: "another-bucket",
      },
    ]);
    const result = await env.run();
    expect(result).toMatchObject({ moved: 0, plan: { unknown: 1, orphans: 1 } });
    expect(result.unknown[0]).toMatchObject({
      sourceKey: "u1/shared.png",
      reason: expect.stringMatching(/referenced by 2 generations/),
    });
    expect(Object.keys(await bucketContents(env.storage)).sort()).toEqual(["u1/elsewhere.png", "u1/shared.png"]);
  });

  it("--prefix narrows the run to keys under it", async () => {
    const env = await seeded(crashKind, crashProvider);
    const result = await env.run({ prefix: "uploads/" });
    expect(result).toMatchObject({ listed: 2, moved: 2 });
    const bucket = await bucketContents(env.storage);
    expect(Object.keys(bucket)).toEqual(
      expect.arrayContaining(["upscaled/u3/g3_0.png", "videos/u4/g4.mp4", "u1/a.png"]),
    );
  });
});

describe.each(databaseKinds)("two concurrent migrate-keys runs on %s", (kind) => {
  it("refuses the second run with exit code 9 (busy) while the first holds the lock, and allows it afterwards", async () => {
    const env = await seeded(kind, "local");
    let release!: () => void;
    const paused = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const first = env.run(
      { concurrency: 1 },
      {
        afterStep: async (step) => {
          if (step === "copy") {
            started();
            await paused;
          }
        },
      },
    );
    await running;
    await expect(env.run()).rejects.toMatchObject({ exitCode: 9, message: expect.stringMatching(/already running/) });
    // A dry run takes no lock and writes nothing: it may look while a run works.
    await expect(env.run({ dryRun: true })).resolves.toMatchObject({ dryRun: true });
    release();
    await expect(first).resolves.toMatchObject({ moved: 7, failed: 0 });
    await expect(env.run()).resolves.toMatchObject({ moved: 0, failed: 0 });
    await expectConsistent(env);
  });
});
