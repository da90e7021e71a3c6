import { describe, expect, it } from "vitest";
import { backfillCursorName, runBackfill, summaryLine, type BackfillProgress } from "../src/jobs/backfill.ts";
import type { Database } from "../src/db/client.ts";
import { Interrupted } from "../src/errors.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { countGenerations, generations, insertGenerations, jobCursors } from "./support/generations.ts";

describe.each(databaseKinds)("backfill on %s", (kind) => {
  const base = Date.parse("2026-11-01T00:00:00Z");

  async function seeded() {
    const { db } = await createTestDatabase(kind);
    const rows = [
      { id: "g01", userId: "alice", prompt: "a fox", operationType: null },
      {
        id: "g02",
        userId: "alice",
        prompt: "[EDITED] a fox",
        operationType: null,
        metadata: { model: "flux", recovered: true },
      },
      { id: "g03", userId: "bob", prompt: "  \n\t[EDITED] leading whitespace", operationType: null },
      { id: "g04", userId: "bob", prompt: "[edited] lower case is a plain prompt", operationType: null },
      { id: "g05", userId: "alice", prompt: "[VIDEO] a fox running", operationType: null },
      { id: "g06", userId: "carol", prompt: "[UPSCALED] old row", operationType: null },
      // Already known: never changed without --force (even where the prompt disagrees).
      {
        id: "g07",
        userId: "carol",
        prompt: "[EDITED] but really an upscale",
        operationType: "upscale",
        storageContext: "upscaled",
        metadata: { detectedBy: "operationType-column" },
      },
      { id: "g08", userId: "alice", prompt: "[VIDEO] a video", operationType: "video", storageContext: "videos" },
    ];
    await insertGenerations(
      db,
      rows.map((row, i) => ({ status: "succeeded", ...row, createdAt: new Date(base + i * 60_000) })),
    );
    return db;
  }

  async function snapshot(db: Database) {
    return generations(db, { orderBy: "id" });
  }

  async function byId(db: Database) {
    const rows = await snapshot(db);
    return Object.fromEntries(rows.map((r) => [r.id, r]));
  }

  it("fills rows without operationType from the prompt prefix and merges metadata", async () => {
    const db = await seeded();
    const before = await byId(db);
    const result = await runBackfill({}, { db });
    expect(result).toMatchObject({ updated: 6, batches: 1, dryRun: false, force: false, total: 6 });
    expect(result.byOperation).toEqual({ generation: 2, edit: 2, upscale: 1, video: 1 });
    expect(summaryLine(result)).toBe("Backfilled 6 rows in 1 batch: generation 2, edit 2, upscale 1, video 1.");
    const rows = await byId(db);
    const pick = (id: string) => [rows[id]!.operationType, rows[id]!.storageContext];
    expect(pick("g01")).toEqual(["generation", "generated"]);
    expect(pick("g02")).toEqual(["edit", "edited"]);
    expect(pick("g03")).toEqual(["edit", "edited"]);
    // Lower-case "[edited]" is words a person typed: a plain generation (the decided rule).
    expect(pick("g04")).toEqual(["generation", "generated"]);
    expect(pick("g05")).toEqual(["video", "videos"]);
    expect(pick("g06")).toEqual(["upscale", "upscaled"]);
    // Existing metadata keys are kept.
    expect(rows.g02!.metadata).toEqual({ model: "flux", recovered: true, detectedBy: "prompt-prefix" });
    expect(rows.g01!.metadata).toEqual({ detectedBy: "prompt-prefix" });
    // Rows that had operationType are untouched.
    expect(rows.g07).toEqual(before.g07);
    expect(rows.g08).toEqual(before.g08);
    // Complete: no cursor left behind; a second run has nothing to do.
    expect((await jobCursors(db)).length).toBe(0);
    const again = await runBackfill({}, { db });
    expect(again).toMatchObject({ updated: 0, batches: 0, total: 0 });
  });

  it("--dry-run counts per operation type and changes nothing", async () => {
    const db = await seeded();
    const before = await snapshot(db);
    const result = await runBackfill({ dryRun: true }, { db });
    expect(result).toMatchObject({ dryRun: true, updated: 6, batches: 0 });
    expect(result.byOperation).toEqual({ generation: 2, edit: 2, upscale: 1, video: 1 });
    expect(await snapshot(db)).toEqual(before);
    expect((await jobCursors(db)).length).toBe(0);
  });

  it("--force reports disagreements and rewrites every row in scope from the prompt", async () => {
    const db = await seeded();
    const dry = await runBackfill({ force: true, dryRun: true }, { db });
    expect(dry).toMatchObject({ disagreements: 1, updated: 8 });
    let started: unknown;
    const result = await runBackfill({ force: true }, { db, onStart: (info) => (started = info) });
    expect(started).toMatchObject({ disagreements: 1, total: 8 });
    expect(result).toMatchObject({ force: true, disagreements: 1, updated: 8 });
    const rows = await byId(db);
    expect([rows.g07!.operationType, rows.g07!.storageContext]).toEqual(["edit", "edited"]);
    expect(rows.g07!.metadata).toEqual({ detectedBy: "prompt-prefix" });
    expect([rows.g08!.operationType, rows.g08!.storageContext]).toEqual(["video", "videos"]);
    const after = await runBackfill({ force: true, dryRun: true }, { db });
    expect(after.disagreements).toBe(0);
  });

  it("--user and --since narrow the scope", async () => {
    const db = await seeded();
    const alice = await runBackfill({ userId: "alice" }, { db });
    expect(alice).toMatchObject({ updated: 3 });
    expect(alice.byOperation).toEqual({ generation: 1, edit: 1, upscale: 0, video: 1 });
    let rows = await byId(db);
    expect(rows.g03!.operationType).toBeNull();
    // Since g04's createdAt (minute 3): g04, g06 left (g05 is alice's, already done).
    const since = await runBackfill({ since: new Date(base + 3 * 60_000) }, { db });
    expect(since).toMatchObject({ updated: 2 });
    rows = await byId(db);
    expect(rows.g03!.operationType).toBeNull();
    expect(rows.g04!.operationType).toBe("generation");
    expect(rows.g06!.operationType).toBe("upscale");
    const both = await runBackfill({ userId: "bob", since: new Date(base), dryRun: true }, { db });
    expect(both).toMatchObject({ updated: 1, byOperation: { edit: 1, generation: 0 } });
  });

  async function tenRows() {
    const { db } = await createTestDatabase(kind);
    await insertGenerations(
      db,
      Array.from({ length: 10 }, (_, i) => ({
        id: `r${String(i).padStart(2, "0")}`,
        userId: "u",
        prompt: i % 2 === 0 ? `[EDITED] ${i}` : `plain ${i}`,
        createdAt: new Date(base + i * 1000),
      })),
    );
    return db;
  }

  it("works in keyset batches by id", async () => {
    const db = await tenRows();
    const seen: BackfillProgress[] = [];
    const result = await runBackfill({ batchSize: 3 }, { db, onProgress: (p) => seen.push({ ...p }) });
    expect(result).toMatchObject({ updated: 10, batches: 4, total: 10, byOperation: { edit: 5, generation: 5 } });
    expect(seen.map((p) => [p.batches, p.updated, p.cursor])).toEqual([
      [1, 3, "r02"],
      [2, 6, "r05"],
      [3, 9, "r08"],
      [4, 10, "r09"],
    ]);
    expect(await countGenerations(db, { operationType: null })).toBe(0);
  });

  it("stops cleanly between batches when interrupted, and a rerun continues from the saved cursor", async () => {
    const db = await tenRows();
    const controller = new AbortController();
    const first = runBackfill(
      { batchSize: 3 },
      { db, signal: controller.signal, onProgress: () => controller.abort() },
    );
    await expect(first).rejects.toBeInstanceOf(Interrupted);
    await expect(first).rejects.toMatchObject({ exitCode: 130 });
    expect(await countGenerations(db, { operationType: null })).toBe(7);
    const [saved] = await jobCursors(db, backfillCursorName({}));
    expect(saved?.cursor).toBe("r02");

    const second = await runBackfill({ batchSize: 3 }, { db });
    expect(second).toMatchObject({ resumedFrom: "r02", total: 7, updated: 7, batches: 3 });
    expect(await countGenerations(db, { operationType: null })).toBe(0);
    expect((await jobCursors(db)).length).toBe(0);
  });

  it("resumes a relative --since (52m) under the same cursor, with the time the first run resolved", async () => {
    const { db } = await createTestDatabase(kind);
    const now = Date.now();
    await insertGenerations(
      db,
      Array.from({ length: 10 }, (_, i) => ({
        id: `r${String(i).padStart(2, "0")}`,
        userId: "u",
        prompt: `p ${i}`,
        createdAt: new Date(now - (60 - i * 5) * 60_000),
      })),
    );
    const { parseDateInput } = await import("../src/core/dates.ts");
    const firstSince = parseDateInput("52m", new Date(now))!;
    const controller = new AbortController();
    const first = runBackfill(
      { batchSize: 3, since: firstSince, sinceText: "52m" },
      { db, signal: controller.signal, onProgress: () => controller.abort() },
    );
    await expect(first).rejects.toBeInstanceOf(Interrupted);
    const name = backfillCursorName({ sinceText: "52m" });
    expect(name).toBe(backfillCursorName({ sinceText: "52m", since: new Date(0) }));
    expect(await jobCursors(db, name).then((c) => c[0] ?? null)).toMatchObject({
      cursor: "r04",
      data: { since: firstSince.toISOString() },
    });

    // Twenty minutes later "52m" means a later time; the rerun still finishes the first run's scope.
    const later = parseDateInput("52m", new Date(now + 20 * 60_000))!;
    const second = await runBackfill({ batchSize: 3, since: later, sinceText: "52m" }, { db });
    expect(second).toMatchObject({
      resumedFrom: "r04",
      total: 5,
      updated: 5,
      filters: { since: firstSince.toISOString() },
    });
    const missing = await generations(db, { where: { operationType: null }, orderBy: "id" });
    expect(missing.map((r) => r.id)).toEqual(["r00", "r01"]);
    expect((await jobCursors(db)).length).toBe(0);
  });

  it("resumes a --force run after its cursor instead of rewriting from the start", async () => {
    const db = await tenRows();
    const controller = new AbortController();
    let calls = 0;
    const onProgress = () => {
      calls += 1;
      if (calls === 2) controller.abort();
    };
    await expect(
      runBackfill({ batchSize: 3, force: true }, { db, signal: controller.signal, onProgress }),
    ).rejects.toBeInstanceOf(Interrupted);
    // A plain run keeps its own cursor: the force run's cursor is not used by it.
    const saved = await jobCursors(db);
    expect(saved.map((c) => [c.name, c.cursor])).toEqual([[backfillCursorName({ force: true }), "r05"]]);
    // Mark the rewritten rows, to see the rerun leave them alone.
    await db.query(`UPDATE "Generation" SET "metadata" = '{"mark":1}'::jsonb WHERE "id" <= 'r05'`);
    const second = await runBackfill({ batchSize: 3, force: true }, { db });
    expect(second).toMatchObject({ resumedFrom: "r05", total: 4, updated: 4, batches: 2 });
    const marked = await db.query<{ id: string }>(
      `SELECT "id" FROM "Generation" WHERE "metadata" = '{"mark":1}'::jsonb ORDER BY "id"`,
    );
    expect(marked.map((r) => r.id)).toEqual(["r00", "r01", "r02", "r03", "r04", "r05"]);
    expect((await jobCursors(db)).length).toBe(0);
  });

  it("refuses a bad batch size", async () => {
    const db = await tenRows();
    await expect(runBackfill({ batchSize: 0 }, { db })).rejects.toThrow(/batch size/);
  });
});
