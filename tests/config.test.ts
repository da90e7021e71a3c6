import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { ConfigError } from "../src/errors.ts";

describe("loadConfig", () => {
  it("runs on the embedded defaults with no configuration", () => {
    const config = loadConfig({}, {});
    expect(config.database.kind).toBe("embedded");
    expect(config.storage.provider).toBe("local");
    expect(config.outputHosts).toEqual(["replicate.delivery"]);
    expect(config.maxOutputBytes).toBe(2 * 1024 ** 3);
  });

  it("puts local storage in GENSTORE_STORAGE_DIR when set, else in GENSTORE_HOME/storage", () => {
    expect(loadConfig({ GENSTORE_HOME: "/h" }).storage).toEqual({ provider: "local", root: "/h/storage" });
    expect(loadConfig({ GENSTORE_HOME: "/h", GENSTORE_STORAGE_DIR: "/srv/outputs" }).storage).toEqual({
      provider: "local",
      root: "/srv/outputs",
    });
  });

  it("lets flags override the environment", () => {
    const config = loadConfig(
      { GENSTORE_HOME: "/env-home" },
      { home: "/flag-home", databaseUrl: "postgresql://h:5432/db?schema=s1" },
    );
    expect(config.home).toBe("/flag-home");
    expect(config.database).toMatchObject({ kind: "postgres", schema: "s1" });
    expect(config.database.kind === "postgres" && config.database.url).not.toContain("schema=");
  });

  it("defaults custom S3 endpoints to path style and WHEN_REQUIRED checksums", () => {
    const config = loadConfig({
      GENSTORE_STORAGE: "aws",
      S3_BUCKET: "b1",
      AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000",
    });
    expect(config.storage).toMatchObject({
      provider: "aws",
      bucket: "b1",
      forcePathStyle: true,
      checksums: "WHEN_REQUIRED",
    });
  });

  it.each([
    [{ GENSTORE_STORAGE: "aws" }, /S3_BUCKET/],
    [{ GENSTORE_STORAGE: "ftp" }, /GENSTORE_STORAGE must be local or aws/],
    [{ DATABASE_URL: "mysql://x" }, /DATABASE_URL must be a postgresql:\/\/ URL/],
    [{ GENSTORE_MAX_OUTPUT_BYTES: "lots" }, /GENSTORE_MAX_OUTPUT_BYTES/],
    [{ REPLICATE_WEBHOOK_SECRET: "not-a-secret" }, /REPLICATE_WEBHOOK_SECRET must look like whsec_/],
    [{ GENSTORE_OUTPUT_HOSTS: "good.host, bad host" }, /GENSTORE_OUTPUT_HOSTS entry "bad host"/],
  ])("names the variable in its one-line error: %j", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe("genstore.config.json", () => {
  async function withFile(content: unknown): Promise<string> {
    const { mkdtemp, writeFile, rm } = await import("node:fs/promises");
    const os = await import("node:os");
    const path = await import("node:path");
    const { onTestFinished } = await import("vitest");
    const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-config-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, "genstore.config.json");
    await writeFile(file, typeof content === "string" ? content : JSON.stringify(content));
    return file;
  }

  it("reads the generations mapping and genstore's schema; GENSTORE_SCHEMA wins over the file", async () => {
    const file = await withFile({
      schema: "gs_from_file",
      generations: {
        table: "public.generations",
        columns: { replicateId: "job_id", userId: "user_id" },
        status: { succeeded: "COMPLETED" },
        defaults: { title: "Untitled" },
      },
    });
    const config = loadConfig({ DATABASE_URL: "postgresql://h/db" }, { config: file });
    expect(config.configFile).toBe(file);
    expect(config.generations).toEqual({
      table: "public.generations",
      columns: { replicateId: "job_id", userId: "user_id" },
      status: { succeeded: "COMPLETED" },
      defaults: { title: "Untitled" },
    });
    expect(config.database.genstoreSchema).toBe("gs_from_file");
    expect(loadConfig({ GENSTORE_CONFIG: file, GENSTORE_SCHEMA: "gs_env" }).database.genstoreSchema).toBe("gs_env");
  });

  it.each([
    [{ generations: { colums: {} } }, /generations\.colums is not a setting genstore knows/],
    [{ generations: { columns: { replicateID: "job_id" } } }, /generations\.columns\.replicateID/],
    [{ generations: { status: { done: "COMPLETED" } } }, /generations\.status\.done/],
    [{ generations: { table: "a.b.c" } }, /generations\.table must be "table" or "schema\.table"/],
    [{ schema: "not-an-identifier" }, /schema must be a plain identifier/],
    ["{ not json", /Cannot read .*genstore\.config\.json/],
  ])("refuses %j, naming the bad key", async (content, message) => {
    const file = await withFile(content);
    expect(() => loadConfig({}, { config: file })).toThrow(message);
    expect(() => loadConfig({}, { config: file })).toThrow(ConfigError);
  });

  it("says so when --config names a file that does not exist", () => {
    expect(() => loadConfig({}, { config: "/nonexistent/genstore.config.json" })).toThrow(
      /Configuration file \/nonexistent\/genstore\.config\.json does not exist/,
    );
  });
});

describe("the embedded schema", () => {
  it("src/db/schema-files.ts carries prisma/ exactly (npm run db:embed after a change there)", async () => {
    const { execFile } = await import("node:child_process");
    const { promisify } = await import("node:util");
    await expect(promisify(execFile)(process.execPath, ["scripts/embed-schema.mjs", "--check"])).resolves.toBeDefined();
  });
});
