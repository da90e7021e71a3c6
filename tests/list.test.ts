import { describe, expect, it } from "vitest";
import { buildListQuery } from "../src/core/list-query.ts";
import { runList } from "../src/jobs/list.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { insertGenerations } from "./support/generations.ts";

describe.each(databaseKinds)("list on %s", (kind) => {
  async function seeded() {
    const { db } = await createTestDatabase(kind);
    const base = Date.parse("2026-11-01T00:00:00Z");
    const rows = [
      { id: "g01", userId: "alice", prompt: "a fox", operationType: "generation" },
      { id: "g02", userId: "alice", prompt: "[EDITED] a fox", operationType: null },
      { id: "g03", userId: "bob", prompt: "  \n[EDITED] leading whitespace", operationType: null },
      { id: "g04", userId: "bob", prompt: "[edited] lower case is a plain prompt", operationType: null },
      { id: "g05", userId: "alice", prompt: "[VIDEO] a fox running", operationType: "video" },
      // The column wins over the prompt (the hybrid rule).
      { id: "g06", userId: "carol", prompt: "[EDITED] but really an upscale", operationType: "upscale" },
      { id: "g07", userId: "carol", prompt: "[UPSCALED] old row", operationType: null, status: "failed" },
    ];
    await insertGenerations(
      db,
      rows.map((row, i) => ({ status: "succeeded", ...row, createdAt: new Date(base + i * 60_000) })),
    );
    return db;
  }

  it("lists newest first and pages with --after", async () => {
    const db = await seeded();
    const first = await runList({ limit: 3 }, { db });
    expect(first.rows.map((r) => r.id)).toEqual(["g07", "g06", "g05"]);
    expect(first.next).toBe("g05");
    const second = await runList({ limit: 3, after: first.next }, { db });
    expect(second.rows.map((r) => r.id)).toEqual(["g04", "g03", "g02"]);
    const last = await runList({ limit: 3, after: second.next }, { db });
    expect(last.rows.map((r) => r.id)).toEqual(["g01"]);
    expect(last.next).toBeUndefined();
  });

  it.each([
    ["edited", ["g03", "g02"]],
    ["upscaled", ["g07", "g06"]],
    ["videos", ["g05"]],
    ["generated", ["g04", "g01"]],
  ] as const)("finds %s rows by the column or, without it, by the prompt prefix", async (context, ids) => {
    const db = await seeded();
    const { rows } = await runList({ limit: 50, context }, { db });
    expect(rows.map((r) => r.id)).toEqual(ids);
  });

  it("reads the first page from the (createdAt, id) index, never sorting the table", async () => {
    const db = await seeded();
    const t = await db.generations();
    const { sql, params } = buildListQuery(t, { limit: 3 });
    // The select list converts createdAt and id (AT TIME ZONE, ::text): an ORDER BY that named
    // those outputs instead of the columns would sort every row (a full scan at 1,000,000).
    const plan = await db.transaction(async (tx) => {
      await tx.query("SET LOCAL enable_seqscan = off");
      return tx.query<Record<string, string>>(`EXPLAIN ${sql}`, ...params);
    });
    const text = plan.map((row) => Object.values(row)[0]).join("\n");
    expect(text).toMatch(/Index Scan/);
    expect(text).not.toMatch(/Sort/);
  });

  it("filters by user, status and dates together", async () => {
    const db = await seeded();
    const { rows } = await runList(
      {
        limit: 50,
        userId: "carol",
        statuses: ["failed"],
        since: new Date("2026-11-01T00:05:00Z"),
        until: new Date("2026-11-01T00:07:00Z"),
      },
      { db },
    );
    expect(rows.map((r) => r.id)).toEqual(["g07"]);
  });

  it("refuses an unknown cursor", async () => {
    const db = await seeded();
    await expect(runList({ limit: 5, after: "nope" }, { db })).rejects.toThrow(/Unknown cursor/);
  });

  it("returns rows with Prisma's field names and types", async () => {
    const db = await seeded();
    const { rows } = await runList({ limit: 1 }, { db });
    expect(Object.keys(rows[0]!).sort()).toEqual(
      [
        "id",
        "userId",
        "prompt",
        "status",
        "replicateId",
        "imageUrls",
        "storageProvider",
        "storageBucket",
        "storageKeys",
        "operationType",
        "storageContext",
        "metadata",
        "createdAt",
        "updatedAt",
        "completedAt",
        "error",
      ].sort(),
    );
    expect(rows[0]!.createdAt).toBeInstanceOf(Date);
  });
});
