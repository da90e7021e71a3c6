import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { describe, expect, it, onTestFinished } from "vitest";
import { genstore } from "./support/cli.ts";
import { pgliteTemplate } from "./support/db.ts";
import { insertAgedDeliveries } from "./support/delivery-rows.ts";

// `genstore db prune` through the real binary, on an embedded database.

async function homeWithDeliveries(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-prune-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const pglite = await PGlite.create({ dataDir: path.join(dir, "db"), loadDataDir: await pgliteTemplate() });
  await pglite.query(`SET search_path TO genstore`); // genstore's own tables, as the binary sees them
  const query = (sql: string, params: unknown[]) => pglite.query(sql, params);
  await insertAgedDeliveries(query, { state: "done", count: 12, ageDays: 10, prefix: "old-done-" });
  await insertAgedDeliveries(query, { state: "done", count: 2, ageDays: 1, prefix: "recent-done-" });
  await insertAgedDeliveries(query, { state: "failed", count: 3, ageDays: 30, prefix: "old-failed-" });
  await pglite.close();
  return dir;
}

describe("genstore db prune (the binary)", () => {
  it("--dry-run --json prints one JSON document and deletes nothing; then a run deletes what it counted", async () => {
    const dir = await homeWithDeliveries();
    const dry = await genstore(["db", "prune", "--dry-run", "--json"], { GENSTORE_HOME: dir });
    expect(dry.code).toBe(0);
    expect(dry.stderr).toBe("");
    expect(JSON.parse(dry.stdout)).toMatchObject({
      dryRun: true,
      olderThanMs: 7 * 86_400_000,
      matched: 12,
      deleted: 0,
      failedKept: 3,
    });

    const again = await genstore(["db", "prune", "--dry-run", "--json"], { GENSTORE_HOME: dir });
    expect(JSON.parse(again.stdout)).toMatchObject({ matched: 12 });

    const real = await genstore(["db", "prune", "--older-than", "2d"], { GENSTORE_HOME: dir });
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(
      /^Deleted 12 done webhook deliveries finished before \d{4}-\d\d-\d\d \d\d:\d\d UTC \(older than 2d 00h\)\. 3 failed deliveries are kept for an operator\.\n$/,
    );
    const after = await genstore(["db", "prune", "--older-than", "12h", "--dry-run", "--json"], { GENSTORE_HOME: dir });
    expect(JSON.parse(after.stdout)).toMatchObject({ matched: 2, failedKept: 3 });
  });

  it("takes its default from GENSTORE_DELIVERY_RETENTION, and names the variable when it is wrong (exit 3)", async () => {
    const dir = await homeWithDeliveries();
    const wider = await genstore(["db", "prune", "--dry-run", "--json"], {
      GENSTORE_HOME: dir,
      GENSTORE_DELIVERY_RETENTION: "12h",
    });
    expect(JSON.parse(wider.stdout)).toMatchObject({ matched: 14 });
    const wrong = await genstore(["db", "prune", "--dry-run"], {
      GENSTORE_HOME: dir,
      GENSTORE_DELIVERY_RETENTION: "soon",
    });
    expect(wrong.code).toBe(3);
    expect(wrong.stdout).toBe("");
    expect(wrong.stderr).toContain("GENSTORE_DELIVERY_RETENTION must be a duration such as 7d");
  });
});
