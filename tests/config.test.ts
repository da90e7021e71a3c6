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
