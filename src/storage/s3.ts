import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
  type HeadObjectCommandOutput,
  type PutObjectCommandOutput,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { Readable } from "node:stream";
import pLimit from "p-limit";
import type { StorageConfig } from "../config.ts";
import { contentTypeFor } from "../core/keys.ts";
import { StorageError } from "../errors.ts";
import { IncompleteBodyError, ObjectExistsError, ObjectNotFoundError } from "./errors.ts";
import { copyMultipart, isNotImplemented, uploadMultipart } from "./s3-multipart.ts";
import type { CopyOptions, DeleteFailure, GetOptions, ListOptions, ObjectInfo, PutOptions, Storage } from "./types.ts";

// The S3 provider, for AWS and any S3-compatible service (R2, MinIO, Swift, moto...).
// Every SDK failure becomes a StorageError here, naming the bucket and key; failures of a
// caller's body stream (a broken download) are passed through unchanged.
//
// Conditional writes (ifNoneMatch) send `If-None-Match: *`. Some servers (OpenStack Swift's
// s3api) answer 501 NotImplemented; from then on this storage instance falls back to
// HEAD-then-PUT, which leaves a short race window between the check and the write.
// Likewise a server that refuses DeleteObjects (400/405/501) gets one DeleteObject per key.

export type S3StorageConfig = Extract<StorageConfig, { provider: "aws" }>;

export interface S3StorageOptions {
  /** Bodies longer than this are uploaded as multipart, in parts of this size. Default 8 MiB. */
  partSize?: number;
  /** Copies of objects larger than this use multipart UploadPartCopy. Default 5 GiB (CopyObject's limit). */
  multipartCopyThreshold?: number;
  /** Part size for multipart copies. Default 512 MiB. */
  copyPartSize?: number;
}

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** Server-side part copies at once. */
const PARALLEL_PARTS = 4;
/**
 * Parts uploaded at once, each holding one part buffer: 2 × 8 MiB kept `recover` of 1 GiB
 * at 177 MB peak RSS into S3 (4: 195 MB, at the same speed on moto_server; bench/recover-rss.ts).
 */
const PARALLEL_UPLOADS = 2;
/** DeleteObjects takes at most 1,000 keys a request. */
const DELETE_BATCH = 1000;
/** Deletes at once when the server lacks DeleteObjects. */
const PARALLEL_DELETES = 16;

const quietLogger = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/**
 * Deadlines of every S3 request, so that a server that accepts connections and never
 * answers (or stops mid-body) fails the call instead of holding a worker for good:
 *   - connect: the TCP (and TLS) connection;
 *   - firstByte: from sending the request (an 8 MiB part included) to the answer's headers;
 *   - idle: no byte either way on the socket, for the whole request, a streamed GET's body
 *     included.
 * The SDK retries a timed-out request (3 attempts in all), so a call gives up after about
 * three times these.
 */
export interface S3Deadlines {
  connectMs: number;
  firstByteMs: number;
  idleMs: number;
}

export const S3_DEADLINES: S3Deadlines = { connectMs: 10_000, firstByteMs: 60_000, idleMs: 20_000 };

/**
 * An S3Client for config. The SDK warns once per process, on Node 20, that its releases
 * from 2027 need Node 22; genstore supports Node 20, so users would see it on every
 * command. The SDK documents AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true for
 * this (aws/aws-sdk-js-v3#7983); it is read when a client is built, and a value the user
 * set is left alone.
 */
export function createS3Client(
  config: S3StorageConfig,
  overrides: Partial<S3ClientConfig> = {},
  deadlines: S3Deadlines = S3_DEADLINES,
): S3Client {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  return new S3Client({
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle,
    requestChecksumCalculation: config.checksums,
    responseChecksumValidation: config.checksums,
    // The handler's logger defaults to console (socket-pool warnings); library code must not
    // print. Without throwOnRequestTimeout the SDK only logs a request over its requestTimeout.
    requestHandler: {
      connectionTimeout: deadlines.connectMs,
      requestTimeout: deadlines.firstByteMs,
      throwOnRequestTimeout: true,
      socketTimeout: deadlines.idleMs,
      logger: quietLogger,
    },
    logger: quietLogger,
    ...overrides,
  });
}

/** The S3 provider. A client passed in stays the caller's to destroy; otherwise close() destroys ours. */
export function createS3Storage(config: S3StorageConfig, client?: S3Client, options: S3StorageOptions = {}): Storage {
  return new S3Storage(config, client ?? createS3Client(config), client === undefined, options);
}

class S3Storage implements Storage {
  readonly provider = "aws" as const;
  readonly bucket: string;
  private readonly endpoint: string;
  private readonly customEndpoint: boolean;
  private readonly partSize: number;
  private readonly multipartCopyThreshold: number;
  private readonly copyPartSize: number;
  /** Whether the server honours If-None-Match on writes; undefined until a server says 501. */
  private conditionalWrites: boolean | undefined;
  /** Whether the server takes DeleteObjects; undefined until a server refuses it. */
  private batchDeletes: boolean | undefined;

  constructor(
    config: S3StorageConfig,
    private readonly client: S3Client,
    private readonly ownsClient: boolean,
    options: S3StorageOptions,
  ) {
    this.bucket = config.bucket;
    this.endpoint = config.endpoint ?? `https://s3.${config.region}.amazonaws.com`;
    this.customEndpoint = config.endpoint !== undefined;
    this.partSize = options.partSize ?? 8 * MiB;
    this.multipartCopyThreshold = options.multipartCopyThreshold ?? 5 * GiB;
    this.copyPartSize = options.copyPartSize ?? 512 * MiB;
  }

  async put(key: string, body: Readable | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    options.signal?.throwIfAborted();
    const contentType = options.contentType ?? contentTypeFor(key);
    if (body instanceof Uint8Array) {
      checkLength(key, options.contentLength, body.byteLength);
      return this.putWhole(key, body, contentType, options);
    }
    try {
      // Bodies that fit one part are sent whole: one request, and a 501 to If-None-Match
      // can be retried because the bytes are still here.
      const start = await readUpTo(body, this.partSize);
      if (start.rest === undefined) {
        const bytes = Buffer.concat(start.chunks);
        checkLength(key, options.contentLength, bytes.byteLength);
        return await this.putWhole(key, bytes, contentType, options);
      }
      return await this.putMultipart(key, start.chunks, start.rest, contentType, options);
    } finally {
      body.destroy(); // put owns the stream: a refused or failed put must not leave it open
    }
  }

  async copy(sourceKey: string, targetKey: string, options: CopyOptions = {}): Promise<ObjectInfo> {
    const known = options.source;
    if (known !== undefined && known.etag !== "" && known.size <= this.multipartCopyThreshold) {
      // Pinned to the ETag the caller measured; a source changed since is refused (412),
      // and then measured again below.
      const copied = await this.copyObject(sourceKey, targetKey, `"${known.etag}"`, { retryIfChanged: true });
      if (copied !== undefined) {
        const etag = unquote(copied.etag);
        // A single-part ETag is the MD5 of the bytes: the copy's equal to the one listed
        // means those bytes were copied, so the listed size is the copy's. Otherwise (a
        // multipart source, or a server that ignores CopySourceIfMatch, as moto does) the
        // copy itself is measured.
        if (etag === known.etag && !etag.includes("-"))
          return { key: targetKey, size: known.size, etag, lastModified: copied.lastModified };
        const target = await this.headObject(targetKey);
        if (target === undefined) throw new ObjectNotFoundError(targetKey, this.where);
        return {
          key: targetKey,
          size: target.ContentLength ?? 0,
          etag: unquote(target.ETag),
          contentType: target.ContentType,
          lastModified: target.LastModified,
        };
      }
    }
    const source = await this.headObject(sourceKey);
    if (source === undefined) throw new ObjectNotFoundError(sourceKey, this.where);
    const size = source.ContentLength ?? 0;
    const copied =
      size > this.multipartCopyThreshold
        ? await this.multipartCopy(sourceKey, targetKey, source)
        : (await this.copyObject(sourceKey, targetKey, source.ETag))!;
    return {
      key: targetKey,
      size,
      etag: unquote(copied.etag),
      contentType: source.ContentType,
      lastModified: copied.lastModified,
    };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const out = await this.headObject(key);
    if (out === undefined) return undefined;
    return {
      key,
      size: out.ContentLength ?? 0,
      etag: unquote(out.ETag),
      contentType: out.ContentType,
      lastModified: out.LastModified,
    };
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const range = options.range && `bytes=${options.range.start}-${options.range.end}`;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }));
      return out.Body as Readable;
    } catch (error) {
      if (errorName(error) === "NoSuchKey") throw new ObjectNotFoundError(key, this.where, error);
      throw this.fail("read", key, error);
    }
  }

  /** A presigned GET: signed here with the client's credentials, no request made. */
  async downloadUrl(key: string, options: { expiresInSeconds: number }): Promise<string> {
    try {
      return await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        expiresIn: options.expiresInSeconds,
      });
    } catch (error) {
      throw this.fail("sign a URL for", key, error);
    }
  }

  async delete(key: string): Promise<void> {
    await this.attempt(
      () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })),
      (error) => this.fail("delete", key, error),
    );
  }

  async deleteMany(keys: string[]): Promise<DeleteFailure[]> {
    const failures: DeleteFailure[] = [];
    for (let start = 0; start < keys.length; start += DELETE_BATCH) {
      const batch = keys.slice(start, start + DELETE_BATCH);
      if (this.batchDeletes !== false) {
        try {
          const out = await this.client.send(
            new DeleteObjectsCommand({
              Bucket: this.bucket,
              Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
            }),
          );
          for (const { Key, Code, Message } of out.Errors ?? []) {
            if (Key === undefined) continue;
            const detail = firstLine(Message);
            failures.push({
              key: Key,
              error: new StorageError(
                `Cannot delete s3://${this.bucket}/${Key} at ${this.endpoint} (${Code ?? "Error"})${detail && detail !== Code ? `: ${detail}` : ""}.`,
                Code === "AccessDenied" ? "Check the AWS credentials and the bucket's policy." : undefined,
              ),
            });
          }
          continue;
        } catch (error) {
          if (!isBatchDeleteRefused(error)) throw this.fail("delete objects in", undefined, error);
          this.batchDeletes = false;
        }
      }
      // A failure that is not the storage's (a bug) stops the deletes not yet started.
      const limit = pLimit(PARALLEL_DELETES);
      await limit.map(batch, async (key) => {
        try {
          await this.delete(key);
        } catch (error) {
          if (error instanceof StorageError) return void failures.push({ key, error });
          limit.clearQueue();
          throw error;
        }
      });
    }
    return failures;
  }

  async *list(prefix = "", options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    for await (const page of this.listPages(prefix, options)) yield* page;
  }

  async *listPages(prefix = "", options: ListOptions = {}): AsyncIterable<ObjectInfo[]> {
    const pages = paginateListObjectsV2(
      { client: this.client, pageSize: options.pageSize ?? 1000 },
      { Bucket: this.bucket, Prefix: prefix || undefined, StartAfter: options.startAfter },
    );
    try {
      for await (const page of pages) {
        const objects: ObjectInfo[] = [];
        for (const object of page.Contents ?? []) {
          if (object.Key === undefined) continue;
          objects.push({
            key: object.Key,
            size: object.Size ?? 0,
            etag: unquote(object.ETag),
            lastModified: object.LastModified,
          });
        }
        if (objects.length > 0) yield objects;
      }
    } catch (error) {
      throw this.fail("list", `${prefix}*`, error);
    }
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      const status = statusOf(error);
      if (status === 404 || errorName(error) === "NoSuchBucket") {
        throw new StorageError(
          `Bucket ${this.bucket} does not exist at ${this.endpoint}.`,
          "Create it, or set S3_BUCKET to an existing bucket.",
          error,
        );
      }
      if (status === 403) {
        throw new StorageError(
          `Access denied to bucket ${this.bucket} at ${this.endpoint} (HTTP 403).`,
          "Check the AWS credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and the bucket's policy.",
          error,
        );
      }
      throw this.fail("check", undefined, error);
    }
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.destroy();
  }

  // --- put ---------------------------------------------------------------------------

  private async putWhole(
    key: string,
    body: Uint8Array,
    contentType: string | undefined,
    options: PutOptions,
  ): Promise<ObjectInfo> {
    const input = {
      Bucket: this.bucket,
      Key: key,
      Body: body,
      ContentType: contentType,
      ContentLength: body.byteLength,
    };
    const send = (conditional: boolean) =>
      this.client.send(new PutObjectCommand(conditional ? { ...input, IfNoneMatch: "*" } : input), {
        abortSignal: options.signal,
      });
    const stored = (out: PutObjectCommandOutput): ObjectInfo => ({
      key,
      size: body.byteLength,
      etag: unquote(out.ETag),
      contentType,
    });
    if (options.ifNoneMatch && this.conditionalWrites !== false) {
      try {
        return stored(await send(true));
      } catch (error) {
        if (!isNotImplemented(error)) throw this.putFailure(key, error);
        this.conditionalWrites = false;
      }
    }
    if (options.ifNoneMatch) await this.refuseExisting(key);
    return stored(
      await this.attempt(
        () => send(false),
        (error) => this.putFailure(key, error),
      ),
    );
  }

  /**
   * Multipart upload of a body longer than one part. With ifNoneMatch, a HEAD first spares
   * uploading gigabytes only to be refused; the conditional completion closes the race, and
   * nothing appears at the key before the completion. A server that answers 501 to the
   * conditional completion gets the HEAD again, then a plain completion of the same parts.
   */
  private async putMultipart(
    key: string,
    head: Buffer[],
    rest: AsyncIterator<Uint8Array>,
    contentType: string | undefined,
    options: PutOptions,
  ): Promise<ObjectInfo> {
    if (options.ifNoneMatch) await this.refuseExisting(key);
    const { etag, size } = await uploadMultipart({
      client: this.client,
      bucket: this.bucket,
      key,
      contentType,
      head,
      rest,
      contentLength: options.contentLength,
      partSize: this.partSize,
      parallel: PARALLEL_UPLOADS,
      ifNoneMatch: options.ifNoneMatch === true && this.conditionalWrites !== false,
      signal: options.signal,
      failure: (error) => this.putFailure(key, error),
      conditionalRefused: async () => {
        this.conditionalWrites = false;
        await this.refuseExisting(key);
      },
    });
    return { key, size, etag: unquote(etag), contentType };
  }

  private async refuseExisting(key: string): Promise<void> {
    if ((await this.headObject(key)) !== undefined) throw new ObjectExistsError(key, this.where);
  }

  private putFailure(key: string, error: unknown): Error {
    if (isPreconditionFailed(error)) return new ObjectExistsError(key, this.where, error);
    return this.fail("write", key, error);
  }

  // --- copy --------------------------------------------------------------------------

  /**
   * Server-side copy. CopySourceIfMatch pins the version that was measured, so the size
   * measured with that ETag is the size of what was copied. With retryIfChanged, a source
   * that no longer has that ETag answers undefined instead of failing.
   */
  private async copyObject(
    sourceKey: string,
    targetKey: string,
    etag: string | undefined,
    options: { retryIfChanged?: boolean } = {},
  ): Promise<{ etag?: string; lastModified?: Date } | undefined> {
    let out;
    try {
      out = await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: targetKey,
          CopySource: this.copySource(sourceKey),
          CopySourceIfMatch: etag,
        }),
      );
    } catch (error) {
      if (options.retryIfChanged && isPreconditionFailed(error)) return undefined;
      throw this.copyFailure(sourceKey, targetKey, error);
    }
    return { etag: out.CopyObjectResult?.ETag, lastModified: out.CopyObjectResult?.LastModified };
  }

  /** CopyObject stops at 5 GiB; beyond, the copy is assembled from ranges of the source. */
  private multipartCopy(sourceKey: string, targetKey: string, source: HeadObjectCommandOutput) {
    return copyMultipart({
      client: this.client,
      bucket: this.bucket,
      copySource: this.copySource(sourceKey),
      sourceKey,
      targetKey,
      source,
      partSize: this.copyPartSize,
      parallel: PARALLEL_PARTS,
      failure: (error) => this.copyFailure(sourceKey, targetKey, error),
    });
  }

  private copyFailure(sourceKey: string, targetKey: string, error: unknown): Error {
    if (isPreconditionFailed(error)) {
      return new StorageError(
        `Object ${sourceKey} in ${this.where} changed while it was being copied to ${targetKey}; the copy was not made.`,
        "Run the command again.",
        error,
      );
    }
    if (errorName(error) === "NoSuchKey") return new ObjectNotFoundError(sourceKey, this.where, error);
    return this.fail("copy", `${sourceKey} to ${targetKey}`, error);
  }

  /** CopySource is "bucket/key" URL-encoded, but each "/" of the key must stay a "/". */
  private copySource(key: string): string {
    return `${encodeURIComponent(this.bucket)}/${key.split("/").map(encodeURIComponent).join("/")}`;
  }

  // --- plumbing ----------------------------------------------------------------------

  private get where(): string {
    return `bucket ${this.bucket}`;
  }

  private async headObject(key: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.fail("read", key, error);
    }
  }

  private async attempt<T>(work: () => Promise<T>, failure: (error: unknown) => Error): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw failure(error);
    }
  }

  /** One line naming what failed, where, and why; anything not from S3 passes through. */
  private fail(action: string, key: string | undefined, error: unknown): Error {
    if (error instanceof StorageError) return error;
    const network = networkFailure(error);
    if (network !== undefined) {
      return this.customEndpoint
        ? new StorageError(
            `Cannot reach S3 at ${this.endpoint} (${network}). Check AWS_ENDPOINT_URL_S3.`,
            "Is the server running at that address? Unset AWS_ENDPOINT_URL_S3 to use AWS itself.",
            error,
          )
        : new StorageError(
            `Cannot reach S3 at ${this.endpoint} (${network}). Check the network and AWS_REGION.`,
            undefined,
            error,
          );
    }
    const name = errorName(error);
    if (name === "CredentialsProviderError") {
      return new StorageError(
        "No AWS credentials were found for S3.",
        "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE.",
        error,
      );
    }
    if (!isSdkError(error)) return error as Error;
    const target = key === undefined ? `bucket ${this.bucket}` : `s3://${this.bucket}/${key}`;
    const status = statusOf(error);
    const detail = firstLine((error as Error).message);
    const reason = [name, status ? `HTTP ${status}` : undefined].filter(Boolean).join(", ");
    const hint = status === 403 ? "Check the AWS credentials and the bucket's policy." : undefined;
    return new StorageError(
      `Cannot ${action} ${target} at ${this.endpoint} (${reason})${detail && detail !== name && detail !== "UnknownError" ? `: ${detail}` : ""}.`,
      hint,
      error,
    );
  }
}

// --- bodies ------------------------------------------------------------------------------

/** Reads until more than limit bytes arrived (rest is then the unread remainder) or the body ended. */
async function readUpTo(
  body: Readable,
  limit: number,
): Promise<{ chunks: Buffer[]; rest?: AsyncIterator<Uint8Array> }> {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  const chunks: Buffer[] = [];
  let size = 0;
  while (size <= limit) {
    const next = await iterator.next();
    if (next.done) return { chunks };
    const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  return { chunks, rest: iterator };
}

function checkLength(key: string, expected: number | undefined, received: number): void {
  if (expected !== undefined && received !== expected) throw new IncompleteBodyError(key, expected, received);
}

// --- SDK errors --------------------------------------------------------------------------

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

function errorName(error: unknown): string {
  return (error as { name?: string } | undefined)?.name ?? "Error";
}

function isSdkError(error: unknown): boolean {
  return typeof error === "object" && error !== null && ("$metadata" in error || "$fault" in error);
}

function isPreconditionFailed(error: unknown): boolean {
  return statusOf(error) === 412 || errorName(error) === "PreconditionFailed";
}

/** A server without multi-object delete (GCS, some gateways) answers 400, 405 or 501 to it. */
function isBatchDeleteRefused(error: unknown): boolean {
  const status = statusOf(error);
  return status === 400 || status === 405 || status === 501 || errorName(error) === "NotImplemented";
}

const NETWORK_CODES = new Set([
  "ECONNABORTED",
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** The network error code when the request never got an HTTP answer. */
function networkFailure(error: unknown): string | undefined {
  const e = error as { code?: string; name?: string; errors?: { code?: string }[] } | undefined;
  if (e?.name === "TimeoutError")
    return `timed out: ${firstLine((error as Error).message).replace(/^@smithy\/node-http-handler - \[ERROR\] /, "")}`;
  const code = e?.code ?? e?.errors?.[0]?.code;
  if (code !== undefined && NETWORK_CODES.has(code)) return code;
  return undefined;
}

function unquote(etag: string | undefined): string {
  return (etag ?? "").replace(/^"|"$/g, "");
}

function firstLine(text: string | undefined): string {
  return (text ?? "").split("\n")[0]!.trim().replace(/\.$/, "");
}
