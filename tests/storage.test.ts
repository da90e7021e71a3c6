import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { afterAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { StorageError } from "../src/errors.ts";
import { IncompleteBodyError, ObjectExistsError, ObjectNotFoundError } from "../src/storage/errors.ts";
import { createStorage } from "../src/storage/index.ts";
import { createLocalStorage } from "../src/storage/local.ts";
import { createS3Client, createS3Storage, type S3StorageConfig, type S3StorageOptions } from "../src/storage/s3.ts";
import type { Storage } from "../src/storage/types.ts";
import { freePort } from "./support/moto.ts";
import { NOT_IMPLEMENTED, queryOf, s3Proxy } from "./support/s3-proxy.ts";

const endpoint = inject("s3Endpoint");
const MiB = 1024 ** 2;

// Registered before any S3 client exists: the SDK would emit its Node-version warning then.
const warnings: string[] = [];
process.on("warning", (warning) => warnings.push(`${warning.name}: ${warning.message}`));

const clients: S3Client[] = [];
afterAll(() => clients.forEach((client) => client.destroy()));

function s3Config(checksums: S3StorageConfig["checksums"], overrides: Partial<S3StorageConfig> = {}): S3StorageConfig {
  return {
    provider: "aws",
    bucket: "unused",
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    checksums,
    ...overrides,
  };
}

function s3Client(config: S3StorageConfig): S3Client {
  const client = createS3Client(config, { credentials: { accessKeyId: "test", secretAccessKey: "test" } });
  clients.push(client);
  return client;
}

/** A storage on a fresh bucket (moto keeps them in memory until the run ends). */
async function s3Storage(
  checksums: S3StorageConfig["checksums"],
  options: S3StorageOptions = {},
  endpointUrl = endpoint,
): Promise<Storage> {
  const config = s3Config(checksums, {
    bucket: `genstore-test-${randomBytes(6).toString("hex")}`,
    endpoint: endpointUrl,
  });
  const client = s3Client(config);
  await s3Client({ ...config, endpoint }).send(new CreateBucketCommand({ Bucket: config.bucket }));
  return createS3Storage(config, client, { partSize: 5 * MiB, ...options });
}

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "genstore-storage-"));
  onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function localStorage(): Promise<Storage> {
  return createLocalStorage(path.join(await tempDir(), "storage"));
}

const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("hex");
const read = async (storage: Storage, key: string) => buffer(await storage.get(key));

/** Streams bytes in 64 KiB chunks, the way a download arrives. */
function streamOf(bytes: Uint8Array, chunkSize = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < bytes.byteLength; i += chunkSize) yield Buffer.from(bytes.subarray(i, i + chunkSize));
    })(),
  );
}

/** A body that delivers some bytes and then fails, like a download cut off mid-way. */
function brokenStream(bytes: number): Readable {
  return Readable.from(
    (async function* () {
      yield randomBytes(bytes);
      throw new Error("connection reset by the output host");
    })(),
  );
}

const providers = [
  { name: "local", make: localStorage },
  { name: "aws (checksums WHEN_REQUIRED)", make: () => s3Storage("WHEN_REQUIRED") },
  { name: "aws (checksums WHEN_SUPPORTED)", make: () => s3Storage("WHEN_SUPPORTED") },
];

describe.each(providers)("$name storage", ({ make }) => {
  it("stores a small body and reads it back with the same etag, size and content type", async () => {
    const storage = await make();
    const bytes = randomBytes(1000);
    const put = await storage.put("generated/user_1/gen1_0.png", bytes);
    expect(put).toMatchObject({
      key: "generated/user_1/gen1_0.png",
      size: 1000,
      etag: md5(bytes),
      contentType: "image/png",
    });

    const head = await storage.head("generated/user_1/gen1_0.png");
    expect(head).toMatchObject({
      key: "generated/user_1/gen1_0.png",
      size: 1000,
      etag: md5(bytes),
      contentType: "image/png",
    });
    expect(head?.lastModified).toBeInstanceOf(Date);
    expect(await read(storage, "generated/user_1/gen1_0.png")).toEqual(bytes);
  });

  it("keeps the content type given to put", async () => {
    const storage = await make();
    await storage.put("uploads/file.bin", Buffer.from("x"), { contentType: "video/mp4" });
    expect((await storage.head("uploads/file.bin"))?.contentType).toBe("video/mp4");
  });

  it("streams a body larger than one multipart part", async () => {
    const storage = await make();
    const bytes = randomBytes(12 * MiB + 123);
    const put = await storage.put("videos/user_1/vid1.mp4", streamOf(bytes), { contentType: "video/mp4" });
    expect(put.size).toBe(bytes.byteLength);

    const head = await storage.head("videos/user_1/vid1.mp4");
    expect(head).toMatchObject({ size: bytes.byteLength, etag: put.etag, contentType: "video/mp4" });
    expect(md5(await read(storage, "videos/user_1/vid1.mp4"))).toBe(md5(bytes));
  });

  it("replaces an existing object when ifNoneMatch is not set", async () => {
    const storage = await make();
    await storage.put("a/b.png", Buffer.from("old"));
    await storage.put("a/b.png", streamOf(Buffer.from("new")));
    expect((await read(storage, "a/b.png")).toString()).toBe("new");
  });

  it("refuses to replace an object with ifNoneMatch and leaves it unchanged", async () => {
    const storage = await make();
    await storage.put("a/b.png", Buffer.from("first"), { ifNoneMatch: true });
    await expect(storage.put("a/b.png", Buffer.from("second"), { ifNoneMatch: true })).rejects.toThrow(
      ObjectExistsError,
    );
    await expect(storage.put("a/b.png", streamOf(Buffer.from("third")), { ifNoneMatch: true })).rejects.toThrow(
      /a\/b\.png already exists/,
    );
    expect((await read(storage, "a/b.png")).toString()).toBe("first");
  });

  it("refuses a large streamed body with ifNoneMatch when the key exists", async () => {
    const storage = await make();
    await storage.put("videos/u/v.mp4", Buffer.from("first"));
    await expect(storage.put("videos/u/v.mp4", streamOf(randomBytes(11 * MiB)), { ifNoneMatch: true })).rejects.toThrow(
      ObjectExistsError,
    );
    expect((await read(storage, "videos/u/v.mp4")).toString()).toBe("first");
    await storage.put("videos/u/w.mp4", streamOf(randomBytes(11 * MiB)), { ifNoneMatch: true });
    expect((await storage.head("videos/u/w.mp4"))?.size).toBe(11 * MiB);
  });

  it("stores nothing when the body is shorter or longer than announced", async () => {
    const storage = await make();
    await expect(storage.put("a/short.png", streamOf(randomBytes(100)), { contentLength: 200 })).rejects.toThrow(
      IncompleteBodyError,
    );
    await expect(storage.put("a/long.png", Buffer.alloc(300), { contentLength: 200 })).rejects.toThrow(
      /300 bytes instead of the 200/,
    );
    await expect(
      storage.put("a/big.mp4", streamOf(randomBytes(11 * MiB)), { contentLength: 12 * MiB }),
    ).rejects.toThrow(IncompleteBodyError);
    expect(await storage.head("a/short.png")).toBeUndefined();
    expect(await storage.head("a/long.png")).toBeUndefined();
    expect(await storage.head("a/big.mp4")).toBeUndefined();
  });

  it("stores nothing when the body fails mid-way, and passes the body's error through", async () => {
    const storage = await make();
    await expect(storage.put("a/cut.mp4", brokenStream(1000))).rejects.toThrow("connection reset by the output host");
    await expect(storage.put("a/cut-large.mp4", brokenStream(7 * MiB))).rejects.toThrow(
      "connection reset by the output host",
    );
    expect(await storage.head("a/cut.mp4")).toBeUndefined();
    expect(await storage.head("a/cut-large.mp4")).toBeUndefined();
    expect(await collect(storage.list())).toEqual([]);
  });

  it("copies an object with the same content, etag and content type, keeping the source", async () => {
    const storage = await make();
    const bytes = randomBytes(2000);
    const source = await storage.put("generations/user 1/photo+1 é.webp", bytes);
    const copy = await storage.copy("generations/user 1/photo+1 é.webp", "generated/user_1/gen_0.webp");
    expect(copy).toMatchObject({
      key: "generated/user_1/gen_0.webp",
      size: 2000,
      etag: source.etag,
      contentType: "image/webp",
    });
    expect(await storage.head("generated/user_1/gen_0.webp")).toMatchObject({
      size: 2000,
      etag: source.etag,
      contentType: "image/webp",
    });
    expect(await read(storage, "generated/user_1/gen_0.webp")).toEqual(bytes);
    expect(await storage.head("generations/user 1/photo+1 é.webp")).toBeDefined();
  });

  it("throws ObjectNotFoundError when copying a missing object", async () => {
    const storage = await make();
    await expect(storage.copy("missing.png", "target.png")).rejects.toThrow(ObjectNotFoundError);
    expect(await storage.head("target.png")).toBeUndefined();
  });

  it("answers undefined to head and ObjectNotFoundError to get for a missing object", async () => {
    const storage = await make();
    await storage.put("a/present.png", Buffer.from("x"));
    expect(await storage.head("a/missing.png")).toBeUndefined();
    expect(await storage.head("a")).toBeUndefined();
    await expect(storage.get("a/missing.png")).rejects.toThrow(ObjectNotFoundError);
    await expect(storage.get("a/missing.png")).rejects.toThrow(/a\/missing\.png does not exist/);
  });

  it("reads a byte range of an object (both ends included), as a video player asks", async () => {
    const storage = await make();
    const bytes = randomBytes(70_000);
    await storage.put("videos/user_1/v1.mp4", bytes);
    expect(await buffer(await storage.get("videos/user_1/v1.mp4", { range: { start: 0, end: 0 } }))).toEqual(
      bytes.subarray(0, 1),
    );
    expect(await buffer(await storage.get("videos/user_1/v1.mp4", { range: { start: 65_000, end: 69_999 } }))).toEqual(
      bytes.subarray(65_000),
    );
    await expect(storage.get("videos/user_1/none.mp4", { range: { start: 0, end: 9 } })).rejects.toThrow(
      ObjectNotFoundError,
    );
  });

  it("deletes an object, and deleting a missing one is not an error", async () => {
    const storage = await make();
    await storage.put("a/b/c.png", Buffer.from("x"));
    await storage.delete("a/b/c.png");
    expect(await storage.head("a/b/c.png")).toBeUndefined();
    await storage.delete("a/b/c.png");
    await storage.delete("never/was.png");
    expect(await collect(storage.list())).toEqual([]);
  });

  it("deletes many objects at once; missing keys are not an error", async () => {
    const storage = await make();
    const keys = Array.from({ length: 30 }, (_, i) => `legacy/u${i % 3}/img${i}.png`);
    await Promise.all(keys.map((key) => storage.put(key, Buffer.from(key))));
    await storage.put("legacy/u0/kept.png", Buffer.from("kept"));
    expect(await storage.deleteMany([...keys, "never/was.png"])).toEqual([]);
    expect((await collect(storage.list())).map((o) => o.key)).toEqual(["legacy/u0/kept.png"]);
    expect(await storage.deleteMany([])).toEqual([]);
  });

  it("copies with the source's listed size and etag, and copies what is there now when the source changed since", async () => {
    const storage = await make();
    const listed = await storage.put("legacy/a.png", Buffer.from("first version"));
    const copy = await storage.copy("legacy/a.png", "generated/u/a_0.png", {
      source: { size: listed.size, etag: listed.etag },
    });
    expect(copy).toMatchObject({ key: "generated/u/a_0.png", size: listed.size, etag: listed.etag });

    await storage.put("legacy/a.png", Buffer.from("the second, longer version"));
    const again = await storage.copy("legacy/a.png", "generated/u/a_1.png", {
      source: { size: listed.size, etag: listed.etag },
    });
    const now = await storage.head("legacy/a.png");
    expect(again).toMatchObject({ size: now!.size, etag: now!.etag });
    expect((await read(storage, "generated/u/a_1.png")).toString()).toBe("the second, longer version");
    await expect(
      storage.copy("missing.png", "x/missing.png", { source: { size: 1, etag: listed.etag } }),
    ).rejects.toThrow(ObjectNotFoundError);
  });

  it("lists every object under a prefix in key order, across pages", async () => {
    const storage = await make();
    const keys = [
      "generated/u1/g_0.png",
      "generated/u1/g_1.png",
      "generated/u2/h_0.png",
      "generated-old/x.png",
      "generated.png",
      "generated/u1/sub/deep_0.png",
      "generated/u10/i_0.png",
      "edited/u1/e_0.png",
    ];
    for (const key of keys) await storage.put(key, Buffer.from(key));

    const all = await collect(storage.list("", { pageSize: 2 }));
    expect(all.map((o) => o.key)).toEqual([...keys].sort(byUtf8));
    expect(all.find((o) => o.key === "edited/u1/e_0.png")).toMatchObject({
      size: 17,
      etag: md5(Buffer.from("edited/u1/e_0.png")),
    });

    const generated = await collect(storage.list("generated/", { pageSize: 2 }));
    expect(generated.map((o) => o.key)).toEqual(keys.filter((k) => k.startsWith("generated/")).sort(byUtf8));
    expect((await collect(storage.list("generated/u1", { pageSize: 3 }))).map((o) => o.key)).toEqual([
      "generated/u1/g_0.png",
      "generated/u1/g_1.png",
      "generated/u1/sub/deep_0.png",
      "generated/u10/i_0.png",
    ]);
    expect(
      (await collect(storage.list("generated/", { startAfter: "generated/u1/g_1.png" }))).map((o) => o.key),
    ).toEqual(["generated/u1/sub/deep_0.png", "generated/u10/i_0.png", "generated/u2/h_0.png"]);
    expect(await collect(storage.list("nothing/"))).toEqual([]);
    // Keys and sizes only (doctor): the same objects in the same order.
    const sizes = await collect(storage.list("", { etags: false }));
    expect(sizes.map((o) => [o.key, o.size])).toEqual(all.map((o) => [o.key, o.size]));
    expect(
      (await collect(storage.list("generated/", { etags: false, startAfter: "generated/u1/g_1.png" }))).map(
        (o) => o.key,
      ),
    ).toEqual(["generated/u1/sub/deep_0.png", "generated/u10/i_0.png", "generated/u2/h_0.png"]);
    // A page at a time (doctor): the same objects, at most pageSize a page, no empty page.
    for (const etags of [true, false]) {
      const pages = await collect(storage.listPages("generated/", { pageSize: 2, etags }));
      expect(pages.flat().map((o) => [o.key, o.size])).toEqual(generated.map((o) => [o.key, o.size]));
      expect(pages.map((page) => page.length)).toEqual([2, 2, 1]);
    }
    expect(await collect(storage.listPages("nothing/"))).toEqual([]);
  });

  it("passes check() when the storage is usable", async () => {
    const storage = await make();
    await expect(storage.check()).resolves.toBeUndefined();
    await storage.close();
  });
});

describe("local storage", () => {
  const escapes = [
    "../outside.png",
    "a/../../outside.png",
    "/etc/passwd",
    "a\\..\\b.png",
    "a//b.png",
    "a/",
    "",
    "a/\u0000b",
    "a/./b.png",
    ".hidden/x.png",
    "a/.partial",
  ];

  it.each(escapes)("refuses the key %j before touching the disk", async (key) => {
    const dir = await tempDir();
    const storage = createLocalStorage(path.join(dir, "storage"));
    await expect(storage.put(key, Buffer.from("x"))).rejects.toThrow(StorageError);
    await expect(storage.put(key, Buffer.from("x"))).rejects.toThrow(/^Refusing storage key/);
    await expect(storage.head(key)).rejects.toThrow(StorageError);
    await expect(storage.get(key)).rejects.toThrow(StorageError);
    await expect(storage.delete(key)).rejects.toThrow(StorageError);
    await expect(storage.copy(key, "b.png")).rejects.toThrow(StorageError);
    await expect(storage.copy("b.png", key)).rejects.toThrow(StorageError);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it("has no download URL of its own: the caller streams the file", async () => {
    const storage = await localStorage();
    await storage.put("a/b.png", Buffer.from("x"));
    expect(await storage.downloadUrl("a/b.png", { expiresInSeconds: 60 })).toBeUndefined();
  });

  it("refuses a list prefix that climbs out of the root", async () => {
    const storage = await localStorage();
    await expect(collect(storage.list("../"))).rejects.toThrow(StorageError);
  });

  it("never lists temp files or sidecars, and leaves no temp file behind", async () => {
    const root = path.join(await tempDir(), "storage");
    const storage = createLocalStorage(root);
    await storage.put("a/b.png", Buffer.from("x"));
    expect((await fs.readdir(path.join(root, "a"))).sort()).toEqual([".b.png.meta.json", "b.png"]);
    await fs.writeFile(path.join(root, "a", ".c.png.1234.partial"), "half");
    expect((await collect(storage.list())).map((o) => o.key)).toEqual(["a/b.png"]);
  });

  it("recomputes the etag of a file replaced behind its back", async () => {
    const root = path.join(await tempDir(), "storage");
    const storage = createLocalStorage(root);
    await storage.put("a/b.png", Buffer.from("original"));
    await fs.writeFile(path.join(root, "a", "b.png"), "edited by hand");
    expect((await storage.head("a/b.png"))?.etag).toBe(md5(Buffer.from("edited by hand")));
  });

  it("removes folders emptied by a delete", async () => {
    const root = path.join(await tempDir(), "storage");
    const storage = createLocalStorage(root);
    await storage.put("a/b/c.png", Buffer.from("x"));
    await storage.put("a/d.png", Buffer.from("x"));
    await storage.delete("a/b/c.png");
    expect((await fs.readdir(path.join(root, "a"))).sort()).toEqual([".d.png.meta.json", "d.png"]);
  });

  it("says when a key clashes with a folder", async () => {
    const storage = await localStorage();
    await storage.put("a/b.png", Buffer.from("x"));
    await expect(storage.put("a", Buffer.from("x"))).rejects.toThrow(/share a name/);
    await expect(storage.put("a/b.png/c.png", Buffer.from("x"))).rejects.toThrow(/share a name/);
  });

  it("fails check() with a clear message when the root cannot be created", async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, "file"), "");
    const storage = createLocalStorage(path.join(dir, "file", "storage"));
    await expect(storage.check()).rejects.toThrow(StorageError);
    await expect(storage.check()).rejects.toThrow(/is not a writable folder \(ENOTDIR\)/);
  });
});

describe("aws storage", () => {
  const modes = ["WHEN_REQUIRED", "WHEN_SUPPORTED"] as const;

  it.each(modes)(
    "copies objects above the multipart-copy threshold with UploadPartCopy (checksums %s)",
    async (checksums) => {
      const storage = await s3Storage(checksums, { multipartCopyThreshold: 6 * MiB, copyPartSize: 5 * MiB });
      const bytes = randomBytes(12 * MiB + 7);
      await storage.put("legacy/big video.mp4", streamOf(bytes), { contentType: "video/mp4" });
      const copy = await storage.copy("legacy/big video.mp4", "videos/u/v.mp4");
      expect(copy).toMatchObject({ key: "videos/u/v.mp4", size: bytes.byteLength, contentType: "video/mp4" });
      expect(await storage.head("videos/u/v.mp4")).toMatchObject({ size: bytes.byteLength, contentType: "video/mp4" });
      expect(md5(await read(storage, "videos/u/v.mp4"))).toBe(md5(bytes));
    },
  );

  it.each(modes)(
    "falls back to check-then-put when the server answers 501 to If-None-Match (checksums %s)",
    async (checksums) => {
      const proxy = await s3Proxy(endpoint, (req) =>
        req.headers["if-none-match"] !== undefined && req.method !== "GET" && req.method !== "HEAD"
          ? NOT_IMPLEMENTED
          : undefined,
      );
      const storage = await s3Storage(checksums, {}, proxy.url);
      await storage.put("a/small.png", Buffer.from("first"), { ifNoneMatch: true });
      await expect(storage.put("a/small.png", Buffer.from("second"), { ifNoneMatch: true })).rejects.toThrow(
        ObjectExistsError,
      );
      expect((await read(storage, "a/small.png")).toString()).toBe("first");
      expect(proxy.refused()).toBe(1);

      const large = await s3Storage(checksums, {}, proxy.url);
      const bytes = randomBytes(11 * MiB);
      await large.put("a/large.mp4", streamOf(bytes), { ifNoneMatch: true });
      expect(md5(await read(large, "a/large.mp4"))).toBe(md5(bytes));
      expect(proxy.refused()).toBe(2);
      await expect(large.put("a/large.mp4", streamOf(bytes), { ifNoneMatch: true })).rejects.toThrow(ObjectExistsError);
    },
  );

  it("gives a presigned GET URL that serves the object, ranges included, with no credentials", async () => {
    const storage = await s3Storage("WHEN_SUPPORTED");
    const bytes = randomBytes(2000);
    await storage.put("generated/user 1/a+b.png", bytes);
    const url = new URL((await storage.downloadUrl("generated/user 1/a+b.png", { expiresInSeconds: 300 }))!);
    expect(url.origin).toBe(new URL(endpoint).origin);
    expect(url.searchParams.get("X-Amz-Expires")).toBe("300");
    expect(url.searchParams.get("X-Amz-Signature")).toMatch(/^[0-9a-f]{64}$/);
    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer())).toEqual(bytes);
    const part = await fetch(url, { headers: { range: "bytes=10-19" } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(bytes.subarray(10, 20));
  });

  it("deletes one key at a time when the server refuses DeleteObjects", async () => {
    const proxy = await s3Proxy(endpoint, (req) =>
      req.method === "POST" && queryOf(req).has("delete") ? NOT_IMPLEMENTED : undefined,
    );
    const storage = await s3Storage("WHEN_REQUIRED", {}, proxy.url);
    const keys = ["a/1.png", "a/2.png", "b/3.png"];
    await Promise.all(keys.map((key) => storage.put(key, Buffer.from(key))));
    expect(await storage.deleteMany(keys.slice(0, 2))).toEqual([]);
    expect(await storage.deleteMany(keys.slice(2))).toEqual([]);
    expect(await collect(storage.list())).toEqual([]);
    expect(proxy.refused()).toBe(1); // remembered: the second call went straight to single deletes
  });

  it("fails check() with a clear message when the endpoint is unreachable", async () => {
    const unreachable = `http://127.0.0.1:${await freePort()}`;
    const config = s3Config("WHEN_REQUIRED", { bucket: "genstore-test-bucket", endpoint: unreachable });
    const storage = createS3Storage(config, s3Client(config));
    const error = await storage.check().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as Error).message).toBe(
      `Cannot reach S3 at ${unreachable} (ECONNREFUSED). Check AWS_ENDPOINT_URL_S3.`,
    );
  });

  it("fails check() with a clear message when the bucket does not exist", async () => {
    const config = s3Config("WHEN_REQUIRED", { bucket: "genstore-test-no-such-bucket" });
    const storage = createS3Storage(config, s3Client(config));
    await expect(storage.check()).rejects.toThrow(StorageError);
    await expect(storage.check()).rejects.toThrow(`Bucket genstore-test-no-such-bucket does not exist at ${endpoint}.`);
  });

  it("names the bucket and key when S3 refuses an operation", async () => {
    const config = s3Config("WHEN_REQUIRED", { bucket: "genstore-test-no-such-bucket" });
    const storage = createS3Storage(config, s3Client(config));
    await expect(storage.put("a/b.png", Buffer.from("x"))).rejects.toThrow(
      /^Cannot write s3:\/\/genstore-test-no-such-bucket\/a\/b\.png at http:\/\/127\.0\.0\.1:\d+ \(NoSuchBucket, HTTP 404\)/,
    );
  });

  it("keeps the SDK's Node-version warning away from users", () => {
    expect(warnings.filter((w) => w.includes("NodeVersionSupport") || w.includes("AWS SDK"))).toEqual([]);
  });
});

describe("createStorage", () => {
  it("builds the configured provider", async () => {
    const root = path.join(await tempDir(), "storage");
    const local = await createStorage({ provider: "local", root });
    expect(local).toMatchObject({ provider: "local", bucket: root });
    const aws = await createStorage(s3Config("WHEN_REQUIRED", { bucket: "genstore-test-bucket" }));
    expect(aws).toMatchObject({ provider: "aws", bucket: "genstore-test-bucket" });
    await aws.close();
  });
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
