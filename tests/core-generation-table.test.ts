import { describe, expect, it } from "vitest";
import {
  defaultMapping,
  GenerationTable,
  type ColumnShape,
  type GenerationMapping,
  type TableShape,
} from "../src/core/generation-table.ts";
import { checkTable, indexColumns } from "../src/core/table-check.ts";

// The generations table's names, values and SQL, as plain data: the mapping of app (b)
// (@@map, snake_case @map, a status enum) against the seed's names.

const text = (extra: Partial<ColumnShape> = {}): ColumnShape => ({
  dataType: "text",
  udtName: "text",
  udtSchema: "pg_catalog",
  nullable: true,
  hasDefault: false,
  ...extra,
});
const col = {
  text,
  id: () => text({ nullable: false }),
  stamp: (extra: Partial<ColumnShape> = {}) =>
    text({ dataType: "timestamp without time zone", udtName: "timestamp", ...extra }),
  jsonb: () => text({ dataType: "jsonb", udtName: "jsonb", hasDefault: true }),
  jsonbArray: () => text({ dataType: "ARRAY", udtName: "_jsonb", hasDefault: true }),
  textArray: () => text({ dataType: "ARRAY", udtName: "_text", hasDefault: true }),
  status: () =>
    text({
      dataType: "USER-DEFINED",
      udtName: "generation_status",
      udtSchema: "public",
      nullable: false,
      hasDefault: true,
      enumValues: ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELED"],
    }),
};

function appB(): { mapping: GenerationMapping; shape: TableShape } {
  const mapping = defaultMapping("public", "generations");
  Object.assign(mapping.columns, {
    userId: "user_id",
    replicateId: "job_id",
    imageUrls: "image_urls",
    storageProvider: "storage_provider",
    storageBucket: "storage_bucket",
    storageKeys: "storage_keys",
    operationType: "operation_type",
    storageContext: "storage_context",
    createdAt: "created_at",
    updatedAt: "updated_at",
    completedAt: "completed_at",
  });
  Object.assign(mapping.status, {
    starting: "PENDING",
    processing: "PROCESSING",
    succeeded: "COMPLETED",
    failed: "FAILED",
    canceled: "CANCELED",
    aborted: "CANCELED",
  });
  const shape: TableShape = {
    columns: new Map<string, ColumnShape>([
      ["id", col.id()],
      ["user_id", text({ nullable: false })],
      ["prompt", text({ nullable: false })],
      ["status", col.status()],
      ["job_id", col.text()],
      ["image_urls", col.textArray()],
      ["storage_provider", col.text()],
      ["storage_bucket", col.text()],
      ["storage_keys", col.jsonbArray()],
      ["operation_type", col.text()],
      ["storage_context", col.text()],
      ["metadata", col.jsonb()],
      ["created_at", col.stamp({ nullable: false, hasDefault: true })],
      ["updated_at", col.stamp({ nullable: false })],
      ["completed_at", col.stamp()],
      ["error", col.text()],
      ["credits", text({ dataType: "integer", udtName: "int4", nullable: false, hasDefault: true })],
      ["visibility", text({ nullable: false, hasDefault: true })],
    ]),
    uniqueColumns: new Set(["id", "job_id"]),
    indexes: [
      "CREATE UNIQUE INDEX generations_pkey ON public.generations USING btree (id)",
      "CREATE INDEX generations_user_id_created_at_idx ON public.generations USING btree (user_id, created_at DESC)",
    ],
  };
  return { mapping, shape };
}

describe("GenerationTable", () => {
  it("reads the app's columns under Prisma's field names, and the app's statuses as Replicate's", () => {
    const { mapping, shape } = appB();
    const t = new GenerationTable("attached", mapping, shape);
    expect(t.name).toBe('"public"."generations"');
    expect(t.selectList()).toContain('"job_id" AS "replicateId"');
    expect(t.selectList()).toContain('"status"::text AS "status"');
    expect(t.selectList()).toContain(`("created_at" AT TIME ZONE 'UTC') AS "createdAt"`);
    expect(t.statusInSql(["starting", "processing"])).toBe(`"status" IN ('PENDING', 'PROCESSING')`);
    // Two statuses can share one of the app's values; it reads back as the first.
    expect(t.statusInSql(["canceled", "aborted"])).toBe(`"status" IN ('CANCELED')`);
    const row = t.decode({
      id: "g1",
      userId: "u1",
      prompt: "p",
      status: "COMPLETED",
      replicateId: "j1",
      imageUrls: '["https://x/a.png"]',
      storageKeys: [{ key: "generated/u1/g1_0.png" }],
      metadata: { model: "m" },
      createdAt: new Date("2026-01-01T00:00:00Z"),
      updatedAt: new Date("2026-01-02T00:00:00Z"),
      completedAt: null,
    });
    expect(row).toMatchObject({ status: "succeeded", replicateId: "j1", imageUrls: ["https://x/a.png"] });
    expect(t.decode({ ...row, status: "ARCHIVED" }).status).toBe("ARCHIVED");
  });

  it("writes only the fields given, in the app's names and vocabulary, and always updatedAt", () => {
    const { mapping, shape } = appB();
    const t = new GenerationTable("attached", mapping, shape);
    const params: unknown[] = [];
    const sets = t.assignments({ status: "succeeded", storageKeys: [{ key: "k" }] }, (v) => `$${params.push(v)}`);
    expect(sets).toEqual([
      `"status" = $1`,
      `"storage_keys" = ARRAY(SELECT e FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x(e, i) ORDER BY i)`,
      `"updated_at" = (now() AT TIME ZONE 'UTC')`,
    ]);
    expect(params).toEqual(["COMPLETED", '[{"key":"k"}]']);
  });

  it("keeps the values of columns the table lacks in metadata, on write and on read", () => {
    const { mapping, shape } = appB();
    for (const name of ["completed_at", "error", "image_urls"]) shape.columns.delete(name);
    const t = new GenerationTable("attached", mapping, shape);
    const params: unknown[] = [];
    const completedAt = new Date("2026-03-01T10:00:00Z");
    const sets = t.assignments({ error: "gone", completedAt }, (v) => `$${params.push(v)}`, { model: "m" });
    expect(sets).toEqual([`"metadata" = $1::jsonb`, `"updated_at" = (now() AT TIME ZONE 'UTC')`]);
    expect(JSON.parse(params[0] as string)).toEqual({
      model: "m",
      completedAt: completedAt.toISOString(),
      error: "gone",
    });
    expect(t.selectList()).toContain('NULL AS "completedAt"');
    const row = t.decode({
      id: "g",
      status: "FAILED",
      metadata: JSON.parse(params[0] as string),
      createdAt: completedAt,
      updatedAt: completedAt,
    });
    expect(row).toMatchObject({ status: "failed", error: "gone", completedAt });
  });

  it.each([
    ["an app default for every other NOT NULL column", {}, []],
    ["a NOT NULL column with neither default nor value", { title: text({ nullable: false }) }, ["title"]],
  ])("creating a row with %s", (_name, extra, blockers) => {
    const { mapping, shape } = appB();
    for (const [name, shaped] of Object.entries(extra)) shape.columns.set(name, shaped);
    const t = new GenerationTable("attached", mapping, shape);
    const insert = t.insertColumns(
      { id: "c1", userId: "u1", prompt: "p", status: "processing", replicateId: "j1" },
      (v) => JSON.stringify(v),
    );
    expect(insert.blockers).toEqual(blockers);
    // A text id is made by genstore (Prisma's cuid() has no database default); updated_at is Prisma's @updatedAt.
    expect(insert.columns).toEqual(['"id"', '"user_id"', '"prompt"', '"status"', '"job_id"', '"updated_at"']);
    expect(insert.values[3]).toBe('"PROCESSING"');
    mapping.defaults.title = "Untitled";
    expect(
      new GenerationTable("attached", mapping, shape).insertColumns(
        { id: "c1", userId: "u1", prompt: "p", status: "processing", replicateId: "j1" },
        (v) => JSON.stringify(v),
      ).blockers,
    ).toEqual([]);
  });
});

describe("checkTable (db check)", () => {
  it("finds every field, reads the enum, and prints the missing indexes of app (b)", () => {
    const { mapping, shape } = appB();
    const check = checkTable("attached", mapping, shape);
    expect(check.usable).toBe(true);
    expect(check.fields.every((f) => f.state === "found")).toBe(true);
    expect(check.status).toMatchObject({ type: "generation_status", unmappedAppValues: [], invalidValues: [] });
    expect(check.predictionIdUnique).toBe(true);
    expect(check.indexes.map((i) => [i.serves, i.present])).toEqual([
      ["list, newest first", false],
      ["list --user", true],
      ["list --context (the operationType column)", false],
      ["list --status, recover --pending", false],
    ]);
    expect(check.indexes[0]!.create).toBe(
      'CREATE INDEX CONCURRENTLY "generations_created_at_id_idx" ON "public"."generations" ("created_at" DESC, "id" DESC);',
    );
  });

  it("reports a missing field with its schema.prisma line, a wrong type, an unmapped enum value and a non-unique prediction id", () => {
    const { mapping, shape } = appB();
    shape.columns.delete("storage_keys");
    shape.columns.set("metadata", text({ dataType: "json", udtName: "json" }));
    shape.uniqueColumns.delete("job_id");
    delete (mapping.status as Record<string, string>).aborted;
    mapping.status.aborted = "ABORTED";
    mapping.status.canceled = "FAILED";
    const check = checkTable("attached", mapping, shape);
    expect(check.usable).toBe(false);
    expect(check.fields.find((f) => f.field === "storageKeys")).toMatchObject({
      state: "missing",
      column: "storage_keys",
    });
    expect(check.fields.find((f) => f.field === "metadata")).toMatchObject({
      state: "wrong-type",
      type: "json",
      expected: "jsonb",
    });
    expect(check.prismaLines).toEqual(['  storageKeys     Json[] @default([]) @map("storage_keys")']);
    expect(check.status).toMatchObject({ unmappedAppValues: ["CANCELED"], invalidValues: ["ABORTED"] });
    expect(check.predictionIdUnique).toBe(false);
    expect(check.indexes.at(-1)!.create).toBe(
      'CREATE UNIQUE INDEX CONCURRENTLY "generations_job_id_key" ON "public"."generations" ("job_id");',
    );
    expect(check.warnings.join("\n")).toMatch(/job_id is not unique/);
  });

  it.each([
    ['CREATE INDEX a ON public.t USING btree ("createdAt" DESC, id DESC)', ["createdAt", "id"]],
    ["CREATE UNIQUE INDEX b ON s.t USING btree (job_id) WHERE (job_id IS NOT NULL)", ["job_id"]],
    [
      "CREATE INDEX c ON t USING btree (user_id, created_at DESC NULLS LAST) INCLUDE (prompt)",
      ["user_id", "created_at"],
    ],
  ])("reads the columns of %s", (def, columns) => {
    expect(indexColumns(def)).toEqual(columns);
  });
});
