import { describe, expect, it } from "vitest";
import { SCAN_FIELDS, scanRows, type ScannedRow } from "../src/db/generations.ts";
import type { Database } from "../src/db/client.ts";
import { createAppDatabase } from "./support/app-database.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { generation, insertGenerations } from "./support/generations.ts";

// doctor's row pass reads timestamps as epoch milliseconds (cheaper than their text): the
// rows it sees must be the rows every other reader sees, to the millisecond.

const instants = ["2026-03-04T05:06:07.891Z", "1999-12-31T23:59:59.999Z", "2026-07-01T00:00:00.000Z"];

async function scanned(db: Database): Promise<ScannedRow[]> {
  const rows: ScannedRow[] = [];
  for await (const batch of scanRows(db, {})) rows.push(...batch);
  return rows;
}

/** The rows as scanRows reads them, and as the ordinary row read reads them, by id. */
async function scannedAndRead(db: Database): Promise<{ scanned: ScannedRow[]; read: ScannedRow[] }> {
  await insertGenerations(
    db,
    instants.map((at, i) => ({
      id: `g${i}`,
      prompt: `[EDITED] a fox ${i}`,
      status: "processing",
      createdAt: new Date(at),
    })),
  );
  const pick = (row: ScannedRow) => Object.fromEntries(SCAN_FIELDS.map((field) => [field, row[field]])) as ScannedRow;
  const rows = (await scanned(db)).sort((a, b) => a.id.localeCompare(b.id));
  const read: ScannedRow[] = [];
  for (const row of rows) read.push(pick(await generation(db, { id: row.id })));
  return { scanned: rows.map(pick), read };
}

describe.each(databaseKinds)("doctor's row scan (%s)", (kind) => {
  it("reads genstore's table as every other reader does, createdAt to the millisecond", async () => {
    const { db } = await createTestDatabase(kind);
    const { scanned, read } = await scannedAndRead(db);
    expect(scanned.map((r) => r.createdAt.toISOString())).toEqual(instants);
    expect(scanned).toEqual(read);
  });

  it("reads an app's table with timestamps without time zone as every other reader does", async () => {
    const { db } = await createAppDatabase(kind, "b");
    const { scanned, read } = await scannedAndRead(db);
    expect(scanned.map((r) => r.createdAt.toISOString())).toEqual(instants);
    expect(scanned).toEqual(read);
  });
});
