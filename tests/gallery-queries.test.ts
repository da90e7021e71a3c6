import { describe, expect, it } from "vitest";
import { STORAGE_CONTEXTS } from "../src/core/operation.ts";
import { countByContext, findGeneration, runList } from "../src/jobs/list.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { insertGenerations } from "./support/generations.ts";

// What the gallery reads beside list's pages: the count per tab (the hybrid rule, list's
// filters) and one row by id.

describe.each(databaseKinds)("gallery queries on %s", (kind) => {
  async function seeded() {
    const { db } = await createTestDatabase(kind);
    const base = Date.parse("2026-11-01T00:00:00Z");
    const rows = [
      { id: "g01", userId: "alice", prompt: "a fox", operationType: "generation" },
      { id: "g02", userId: "alice", prompt: "[EDITED] a fox", operationType: null },
      { id: "g03", userId: "bob", prompt: "  \n[EDITED] leading whitespace", operationType: null },
      { id: "g04", userId: "bob", prompt: "[edited] lower case is a plain prompt", operationType: null },
      { id: "g05", userId: "alice", prompt: "[VIDEO] a fox running", operationType: "video" },
      { id: "g06", userId: "carol", prompt: "[EDITED] but really an upscale", operationType: "upscale" },
      { id: "g07", userId: "carol", prompt: "[UPSCALED] old row", operationType: null, status: "failed" },
      // A value the rule does not know: the prompt decides, as in list.
      { id: "g08", userId: "carol", prompt: "[VIDEO] typo in the column", operationType: "vidoe" },
    ];
    await insertGenerations(
      db,
      rows.map((row, i) => ({ status: "succeeded", ...row, createdAt: new Date(base + i * 60_000) })),
    );
    return db;
  }

  it("counts all rows and each context's by the hybrid rule", async () => {
    const db = await seeded();
    expect(await countByContext({}, { db })).toEqual({ all: 8, generated: 2, edited: 2, upscaled: 2, videos: 2 });
  });

  it.each([
    ["no filter", {}],
    ["a user", { userId: "carol" }],
    ["a status", { statuses: ["failed" as const] }],
    ["a date range", { since: new Date("2026-11-01T00:02:00Z"), until: new Date("2026-11-01T00:06:00Z") }],
  ])("gives each tab exactly as many rows as list shows for it, with %s", async (_name, filters) => {
    const db = await seeded();
    const counts = await countByContext(filters, { db });
    expect(counts.all).toBe((await runList({ ...filters, limit: 100 }, { db })).rows.length);
    for (const context of STORAGE_CONTEXTS)
      expect(counts[context], context).toBe((await runList({ ...filters, context, limit: 100 }, { db })).rows.length);
  });

  it("finds one row by id, with Prisma's field names, and null for an unknown id", async () => {
    const db = await seeded();
    expect(await findGeneration("g06", { db })).toMatchObject({ id: "g06", operationType: "upscale", userId: "carol" });
    expect(await findGeneration("nope", { db })).toBeNull();
  });
});
