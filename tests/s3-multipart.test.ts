import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { createHash, randomBytes } from "node:crypto";
import { buffer } from "node:stream/consumers";
import type { Readable } from "node:stream";
import { afterAll, describe, expect, inject, it } from "vitest";
import { StorageError } from "../src/errors.ts";
import { ObjectExistsError } from "../src/storage/errors.ts";
import { createS3Client, type S3StorageConfig } from "../src/storage/s3.ts";
import { copyMultipart, partRanges, uploadMultipart, type MultipartUpload } from "../src/storage/s3-multipart.ts";
import { ACCESS_DENIED, NOT_IMPLEMENTED, queryOf, s3Proxy, type S3Answer, type S3Proxy } from "./support/s3-proxy.ts";

// The S3 provider's multipart upload and copy, on moto_server, behind a recording proxy
// that can answer for the server (a refused part, a 501 to a conditional completion).

const endpoint = inject("s3Endpoint");
const MiB = 1024 ** 2;
const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("hex");

const clients: S3Client[] = [];
afterAll(() => clients.forEach((client) => client.destroy()));

function client(url: string, checksums: S3StorageConfig["checksums"] = "WHEN_REQUIRED"): S3Client {
  const config: S3StorageConfig = {
    provider: "aws",
    bucket: "unused",
    region: "us-east-1",
    endpoint: url,
    forcePathStyle: true,
    checksums,
  };
  const made = createS3Client(config, { credentials: { accessKeyId: "test", secretAccessKey: "test" } });
  clients.push(made);
  return made;
}

/** A fresh bucket, a client that goes through a recording proxy, and one straight to moto. */
async function setup(
  options: { answer?: (req: S3Proxy["requests"][number]) => S3Answer | undefined; checksums?: "WHEN_SUPPORTED" } = {},
) {
  const bucket = `genstore-mp-${randomBytes(6).toString("hex")}`;
  const direct = client(endpoint);
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  const proxy = await s3Proxy(endpoint, options.answer);
  const s3 = client(proxy.url, options.checksums ?? "WHEN_REQUIRED");
  const read = async (key: string) =>
    buffer((await direct.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body as Readable);
  const exists = (key: string) =>
    direct.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
      () => true,
      () => false,
    );
  const openUploads = async () =>
    (await direct.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0;
  return { bucket, s3, direct, proxy, read, exists, openUploads };
}

/** The body the way a download arrives: 64 KiB chunks, optionally failing after `failAfter` bytes. */
async function* chunksOf(bytes: Uint8Array, failAfter = Infinity): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += 64 * 1024) {
    if (i >= failAfter) throw new Error("connection reset by the output host");
    yield bytes.subarray(i, i + 64 * 1024);
  }
}

/** An upload of bytes to key as s3.ts starts one: the first chunk already read. */
function upload(
  s3: S3Client,
  bucket: string,
  key: string,
  bytes: Uint8Array,
  overrides: Partial<MultipartUpload> = {},
) {
  const rest = chunksOf(bytes);
  return uploadMultipart({
    client: s3,
    bucket,
    key,
    contentType: "video/mp4",
    head: [],
    rest,
    contentLength: bytes.byteLength,
    partSize: 5 * MiB,
    parallel: 2,
    ifNoneMatch: false,
    failure: (error) =>
      (error as { name?: string }).name === "PreconditionFailed"
        ? new ObjectExistsError(key, `bucket ${bucket}`, error)
        : new StorageError(`S3 refused: ${(error as Error).name}`, undefined, error),
    conditionalRefused: async () => {},
    ...overrides,
  });
}

const partUploads = (proxy: S3Proxy) =>
  proxy.requests
    .filter((r) => r.method === "PUT" && queryOf(r).has("partNumber"))
    .map((r) => queryOf(r).get("partNumber"));
const aborts = (proxy: S3Proxy) => proxy.requests.filter((r) => r.method === "DELETE" && queryOf(r).has("uploadId"));

describe("uploadMultipart", () => {
  it.each(["WHEN_REQUIRED", "WHEN_SUPPORTED"] as const)(
    "uploads the body in parts of partSize and completes it (checksums %s)",
    async (checksums) => {
      const { s3, bucket, proxy, read, direct } = await setup({ checksums: checksums as "WHEN_SUPPORTED" });
      const bytes = randomBytes(12 * MiB + 7);
      const result = await upload(s3, bucket, "videos/u/v.mp4", bytes);
      expect(result.size).toBe(bytes.byteLength);
      expect(result.etag).toMatch(/-3"?$/);
      expect(partUploads(proxy).sort()).toEqual(["1", "2", "3"]);
      expect(md5(await read("videos/u/v.mp4"))).toBe(md5(bytes));
      const head = await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: "videos/u/v.mp4" }));
      expect(head.ContentType).toBe("video/mp4");
    },
  );

  it("continues after the bytes the caller already read", async () => {
    const { s3, bucket, read } = await setup();
    const bytes = randomBytes(11 * MiB);
    const head = [Buffer.from(bytes.subarray(0, 6 * MiB))];
    await upload(s3, bucket, "a.bin", bytes, { head, rest: chunksOf(bytes.subarray(6 * MiB)) });
    expect(md5(await read("a.bin"))).toBe(md5(bytes));
  });

  it("reuses its part buffers: six parts, two in flight, two buffers", async () => {
    const { s3, bucket, read } = await setup();
    const buffers = new Set<ArrayBufferLike>();
    s3.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { PartNumber?: number; Body?: Uint8Array };
        if (input.PartNumber !== undefined && input.Body) buffers.add(input.Body.buffer);
        return next(args);
      },
      { step: "initialize", name: "recordPartBuffers" },
    );
    const bytes = randomBytes(27 * MiB + 1);
    await upload(s3, bucket, "six-parts.bin", bytes);
    expect(buffers.size).toBe(2);
    // Reused buffers never leak one part's bytes into another.
    expect(md5(await read("six-parts.bin"))).toBe(md5(bytes));
  });

  it("aborts the upload when a part is refused, starts no part after it, and stores nothing", async () => {
    const { s3, bucket, proxy, exists, openUploads } = await setup({
      answer: (req) => (req.method === "PUT" && queryOf(req).get("partNumber") === "2" ? ACCESS_DENIED : undefined),
    });
    const error = await upload(s3, bucket, "refused.bin", randomBytes(27 * MiB), { parallel: 1 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StorageError);
    expect((error as Error).message).toBe("S3 refused: AccessDenied");
    expect(partUploads(proxy)).toEqual(["1", "2"]);
    expect(aborts(proxy)).toHaveLength(1);
    expect(await openUploads()).toBe(0);
    expect(await exists("refused.bin")).toBe(false);
  });

  it("aborts the upload when the body fails mid-way, and passes the body's own error through", async () => {
    const { s3, bucket, proxy, exists, openUploads } = await setup();
    const bytes = randomBytes(20 * MiB);
    const error = await upload(s3, bucket, "broken.bin", bytes, { rest: chunksOf(bytes, 12 * MiB) }).catch(
      (e: unknown) => e,
    );
    expect((error as Error).message).toBe("connection reset by the output host");
    expect(aborts(proxy)).toHaveLength(1);
    expect(await openUploads()).toBe(0);
    expect(await exists("broken.bin")).toBe(false);
  });

  it("refuses, with the conditional completion, an object that appeared while the parts were uploading", async () => {
    const { s3, bucket, direct, read, openUploads } = await setup();
    const bytes = randomBytes(11 * MiB);
    async function* appearing(): AsyncGenerator<Uint8Array> {
      yield* chunksOf(bytes.subarray(0, 6 * MiB));
      await direct.send(new PutObjectCommand({ Bucket: bucket, Key: "taken.bin", Body: "the first writer's" }));
      yield* chunksOf(bytes.subarray(6 * MiB));
    }
    const error = await upload(s3, bucket, "taken.bin", bytes, { rest: appearing(), ifNoneMatch: true }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ObjectExistsError);
    expect((await read("taken.bin")).toString()).toBe("the first writer's");
    expect(await openUploads()).toBe(0);
  });

  it("completes without the condition after the server answers 501 to it, once the key is checked", async () => {
    const { s3, bucket, proxy, read } = await setup({
      answer: (req) =>
        req.method === "POST" && queryOf(req).has("uploadId") && req.headers["if-none-match"] !== undefined
          ? NOT_IMPLEMENTED
          : undefined,
    });
    const bytes = randomBytes(11 * MiB);
    let checks = 0;
    await upload(s3, bucket, "swift.bin", bytes, { ifNoneMatch: true, conditionalRefused: async () => void checks++ });
    expect(checks).toBe(1);
    expect(proxy.refused()).toBe(1);
    expect(md5(await read("swift.bin"))).toBe(md5(bytes));
  });

  it("aborts when the check after a 501 finds the key taken", async () => {
    const { s3, bucket, proxy, exists, openUploads } = await setup({
      answer: (req) =>
        req.method === "POST" && queryOf(req).has("uploadId") && req.headers["if-none-match"] !== undefined
          ? NOT_IMPLEMENTED
          : undefined,
    });
    const taken = new ObjectExistsError("swift.bin", "bucket b");
    const error = await upload(s3, bucket, "swift.bin", randomBytes(11 * MiB), {
      ifNoneMatch: true,
      conditionalRefused: () => Promise.reject(taken),
    }).catch((e: unknown) => e);
    expect(error).toBe(taken);
    expect(aborts(proxy)).toHaveLength(1);
    expect(await openUploads()).toBe(0);
    expect(await exists("swift.bin")).toBe(false);
  });
});

describe("copyMultipart", () => {
  async function copySetup(answer?: (req: S3Proxy["requests"][number]) => S3Answer | undefined) {
    const env = await setup({ answer });
    const bytes = randomBytes(12 * MiB + 7);
    await upload(env.direct, env.bucket, "legacy/big.mp4", bytes);
    const source = await env.direct.send(new HeadObjectCommand({ Bucket: env.bucket, Key: "legacy/big.mp4" }));
    const copy = (parallel = 4) =>
      copyMultipart({
        client: env.s3,
        bucket: env.bucket,
        copySource: `${env.bucket}/legacy/big.mp4`,
        sourceKey: "legacy/big.mp4",
        targetKey: "videos/u/big.mp4",
        source,
        partSize: 5 * MiB,
        parallel,
        failure: (error) => new StorageError(`S3 refused: ${(error as Error).name}`, undefined, error),
      });
    return { ...env, bytes, copy };
  }

  it("assembles the copy from ranges of the source, pinned to its ETag, with its headers", async () => {
    const { copy, proxy, read, direct, bucket, bytes } = await copySetup();
    await copy();
    const partCopies = proxy.requests.filter((r) => r.headers["x-amz-copy-source-range"] !== undefined);
    expect(partCopies.map((r) => r.headers["x-amz-copy-source-range"]).sort()).toEqual([
      "bytes=0-5242879",
      "bytes=10485760-12582918",
      "bytes=5242880-10485759",
    ]);
    expect(new Set(partCopies.map((r) => r.headers["x-amz-copy-source-if-match"])).size).toBe(1);
    expect(md5(await read("videos/u/big.mp4"))).toBe(md5(bytes));
    const head = await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: "videos/u/big.mp4" }));
    expect(head.ContentType).toBe("video/mp4");
  });

  it("aborts the copy when a part fails, and starts no part after it", async () => {
    const { copy, proxy, exists, openUploads } = await copySetup((req) =>
      req.headers["x-amz-copy-source-range"] !== undefined ? ACCESS_DENIED : undefined,
    );
    await expect(copy(1)).rejects.toThrow("S3 refused: AccessDenied");
    expect(proxy.requests.filter((r) => r.headers["x-amz-copy-source-range"] !== undefined)).toHaveLength(1);
    expect(aborts(proxy)).toHaveLength(1);
    expect(await openUploads()).toBe(0);
    expect(await exists("videos/u/big.mp4")).toBe(false);
  });
});

describe("partRanges", () => {
  it.each([
    ["an empty object", 0, 5, []],
    ["one short part", 3, 5, [[1, 0, 2]]],
    [
      "exact parts",
      10,
      5,
      [
        [1, 0, 4],
        [2, 5, 9],
      ],
    ],
    [
      "a short last part",
      11,
      5,
      [
        [1, 0, 4],
        [2, 5, 9],
        [3, 10, 10],
      ],
    ],
  ] as const)("%s", (_, size, partSize, expected) => {
    expect(partRanges(size, partSize).map((r) => [r.partNumber, r.start, r.end])).toEqual(expected);
  });

  it("grows the parts so that an object needs at most 10,000 of them", () => {
    const ranges = partRanges(100_000 * MiB, 5 * MiB);
    expect(ranges).toHaveLength(10_000);
    expect(ranges.at(-1)!.end).toBe(100_000 * MiB - 1);
  });
});
