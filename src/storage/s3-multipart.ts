import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type HeadObjectCommandOutput,
  type S3Client,
} from "@aws-sdk/client-s3";
import pLimit from "p-limit";
import { IncompleteBodyError } from "./errors.ts";

// The S3 provider's multipart work (src/storage/s3.ts decides when): uploading a body
// longer than one part, and copying an object larger than CopyObject's 5 GiB from ranges
// of itself. Nothing appears at the key before the completion; an upload or copy that
// fails is aborted, so no parts are left billed (a lifecycle rule for incomplete uploads
// cleans up what an abort misses).

/** S3 allows at most 10,000 parts an upload. */
export const MAX_PARTS = 10_000;

export interface MultipartUpload {
  client: S3Client;
  bucket: string;
  key: string;
  contentType: string | undefined;
  /** The bytes already read (more than one part, so a single PUT was not enough) and the rest of the body. */
  head: Buffer[];
  rest: AsyncIterator<Uint8Array>;
  /** The length announced by the caller: a body longer or shorter fails before the completion. */
  contentLength: number | undefined;
  /** Bytes per part; raised when a known length would need more than MAX_PARTS of them. */
  partSize: number;
  /** Parts uploaded at once, each holding one part buffer. */
  parallel: number;
  /** Complete with `If-None-Match: *`, so an object that appeared meanwhile is never replaced. */
  ifNoneMatch: boolean;
  signal?: AbortSignal;
  /** Turns an SDK failure into the storage's error (a StorageError, or ObjectExistsError for a 412). */
  failure: (error: unknown) => Error;
  /**
   * The server answered 501 NotImplemented to the conditional completion (OpenStack Swift's
   * S3 API does): called to check the key another way (it throws when the key is taken);
   * the same parts are then completed without the condition.
   */
  conditionalRefused: () => Promise<void>;
}

/** Uploads the body in parts and completes the upload; returns the object's ETag and size. */
export async function uploadMultipart(upload: MultipartUpload): Promise<{ etag: string | undefined; size: number }> {
  const { client, bucket, key, failure } = upload;
  const body = countedBody(key, upload.head, upload.rest, upload.contentLength);
  // 10,000 parts are 78 GiB at 8 MiB; a known length lifts that limit.
  const partSize = Math.max(upload.partSize, Math.ceil((upload.contentLength ?? 0) / MAX_PARTS));
  // The SDK computes a CRC32 per part itself only when it may (WHEN_SUPPORTED); the upload
  // must then announce it so that the completion can carry the parts' checksums.
  const checksummed = (await client.config.requestChecksumCalculation()) === "WHEN_SUPPORTED";
  const checksum = checksummed ? { ChecksumAlgorithm: "CRC32" as const } : {};
  const abortController = new AbortController();
  const abort = () => abortController.abort(upload.signal?.reason);
  upload.signal?.addEventListener("abort", abort, { once: true });
  const send = { abortSignal: abortController.signal };
  const target = { Bucket: bucket, Key: key };
  try {
    const created = await attempt(
      () =>
        client.send(
          new CreateMultipartUploadCommand({ ...target, ContentType: upload.contentType, ...checksum }),
          send,
        ),
      failure,
    );
    const uploadId = created.UploadId!;
    try {
      const parts = await uploadParts(
        body.chunks,
        partSize,
        upload.parallel,
        abortController,
        async (PartNumber, bytes) => {
          const out = await attempt(
            () =>
              client.send(
                new UploadPartCommand({
                  ...target,
                  UploadId: uploadId,
                  PartNumber,
                  Body: bytes,
                  ContentLength: bytes.byteLength,
                  ...checksum,
                }),
                send,
              ),
            failure,
          );
          return { PartNumber, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32 };
        },
      );
      const complete = (ifNoneMatch: boolean) =>
        client.send(
          new CompleteMultipartUploadCommand({
            ...target,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
            ...(ifNoneMatch ? { IfNoneMatch: "*" } : {}),
          }),
          send,
        );
      let etag: string | undefined;
      try {
        etag = (await complete(upload.ifNoneMatch)).ETag;
      } catch (error) {
        if (!upload.ifNoneMatch || !isNotImplemented(error)) throw failure(error);
        await upload.conditionalRefused();
        etag = (await attempt(() => complete(false), failure)).ETag;
      }
      return { etag, size: body.size() ?? 0 };
    } catch (error) {
      await abortUpload(client, bucket, key, uploadId);
      throw error;
    }
  } finally {
    upload.signal?.removeEventListener("abort", abort);
  }
}

export interface MultipartCopy {
  client: S3Client;
  bucket: string;
  /** The CopySource header naming the source ("bucket/key", URL-encoded). */
  copySource: string;
  sourceKey: string;
  targetKey: string;
  /** The source as measured: its length, its headers, and its ETag, which every part copy is pinned to. */
  source: HeadObjectCommandOutput;
  /** Bytes per part (raised when the object would need more than MAX_PARTS). */
  partSize: number;
  /** Part copies at once. */
  parallel: number;
  failure: (error: unknown) => Error;
}

/** CopyObject stops at 5 GiB; beyond, the copy is assembled from ranges of the source. */
export async function copyMultipart(copy: MultipartCopy): Promise<{ etag?: string; lastModified?: Date }> {
  const { client, bucket, targetKey, source, failure } = copy;
  const created = await attempt(
    () =>
      client.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: targetKey,
          // Unlike CopyObject, a multipart copy does not carry the source's headers over.
          ContentType: source.ContentType,
          ContentEncoding: source.ContentEncoding,
          ContentDisposition: source.ContentDisposition,
          ContentLanguage: source.ContentLanguage,
          CacheControl: source.CacheControl,
          Metadata: source.Metadata,
        }),
      ),
    failure,
  );
  const uploadId = created.UploadId!;
  try {
    // The first failed part stops the others from starting (cleared, they never run: the
    // map has already rejected with that failure).
    const limit = pLimit(copy.parallel);
    const parts = await limit.map(
      partRanges(source.ContentLength ?? 0, copy.partSize),
      async (range): Promise<CompletedPart> => {
        try {
          const out = await attempt(
            () =>
              client.send(
                new UploadPartCopyCommand({
                  Bucket: bucket,
                  Key: targetKey,
                  UploadId: uploadId,
                  PartNumber: range.partNumber,
                  CopySource: copy.copySource,
                  CopySourceRange: `bytes=${range.start}-${range.end}`,
                  CopySourceIfMatch: source.ETag,
                }),
              ),
            failure,
          );
          return { PartNumber: range.partNumber, ETag: out.CopyPartResult?.ETag };
        } catch (error) {
          limit.clearQueue();
          throw error;
        }
      },
    );
    const done = await attempt(
      () =>
        client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: targetKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
          }),
        ),
      failure,
    );
    return { etag: done.ETag };
  } catch (error) {
    await abortUpload(client, bucket, targetKey, uploadId);
    throw error;
  }
}

/** Byte ranges of at least minPartSize covering size bytes, in at most MAX_PARTS parts. */
export function partRanges(size: number, minPartSize: number): { partNumber: number; start: number; end: number }[] {
  const partSize = Math.max(minPartSize, Math.ceil(size / MAX_PARTS));
  const ranges = [];
  for (let start = 0, partNumber = 1; start < size; start += partSize, partNumber++) {
    ranges.push({ partNumber, start, end: Math.min(start + partSize, size) - 1 });
  }
  return ranges;
}

/**
 * Cuts the body into parts of partSize and uploads up to `parallel` of them at once. Each
 * upload owns one part buffer, filled by copying the body's chunks and reused by a later
 * part once its part is stored: memory stays at parallel × partSize however long the body,
 * with no garbage per part for the collector to catch up with. Each task reads its part
 * and only then queues the next one, so the body is read in order, one part at a time.
 * The first failure aborts the others' requests, starts no new part, and is the one thrown.
 */
async function uploadParts(
  chunks: AsyncIterator<Uint8Array>,
  partSize: number,
  parallel: number,
  abortController: AbortController,
  upload: (partNumber: number, bytes: Buffer) => Promise<CompletedPart>,
): Promise<CompletedPart[]> {
  const limit = pLimit(parallel);
  const parts: CompletedPart[] = [];
  const idle: Buffer[] = [];
  const tasks: Promise<void>[] = [];
  let pending: Uint8Array | undefined;
  let ended = false;
  let nextPartNumber = 1;
  let failure: { error: unknown } | undefined;

  const fill = async (buffer: Buffer): Promise<Buffer | undefined> => {
    let filled = 0;
    while (filled < partSize) {
      if (pending === undefined) {
        if (ended) break;
        const next = await chunks.next();
        if (next.done) {
          ended = true;
          break;
        }
        pending = next.value;
      }
      const take = Math.min(pending.byteLength, partSize - filled);
      buffer.set(take === pending.byteLength ? pending : pending.subarray(0, take), filled);
      filled += take;
      pending = take === pending.byteLength ? undefined : pending.subarray(take);
    }
    return filled === 0 ? undefined : buffer.subarray(0, filled);
  };

  const queueNextPart = () => {
    tasks.push(
      limit(async () => {
        if (failure) return;
        const buffer = idle.pop() ?? Buffer.allocUnsafeSlow(partSize);
        try {
          const bytes = await fill(buffer);
          if (bytes === undefined || failure) return;
          const partNumber = nextPartNumber++;
          if (partNumber > MAX_PARTS) throw new Error(`More than ${MAX_PARTS} parts of ${partSize} bytes.`);
          queueNextPart();
          parts.push(await upload(partNumber, bytes));
        } catch (error) {
          if (failure === undefined) {
            failure = { error };
            abortController.abort();
          }
        } finally {
          idle.push(buffer);
        }
      }),
    );
  };

  queueNextPart();
  // Tasks queue the next as they go: wait until the last one queued has finished.
  for (let i = 0; i < tasks.length; i++) await tasks[i];
  if (failure) throw failure.error;
  return parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
}

/**
 * The already-read head plus the rest of the body, counted. A body longer or shorter than
 * announced throws before the upload can complete, so no truncated object appears.
 */
function countedBody(key: string, head: Buffer[], rest: AsyncIterator<Uint8Array>, expected: number | undefined) {
  let size = 0;
  let ended = false;
  const count = (chunk: Uint8Array) => {
    size += chunk.byteLength;
    if (expected !== undefined && size > expected) throw new IncompleteBodyError(key, expected, size);
  };
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (const chunk of head) {
      count(chunk);
      yield chunk;
    }
    for (let next = await rest.next(); !next.done; next = await rest.next()) {
      count(next.value);
      yield next.value;
    }
    if (expected !== undefined && size !== expected) throw new IncompleteBodyError(key, expected, size);
    ended = true;
  }
  return { chunks: chunks(), size: () => (ended ? size : undefined) };
}

async function abortUpload(client: S3Client, bucket: string, key: string, uploadId: string): Promise<void> {
  // Best effort: a lifecycle rule for incomplete uploads cleans up what this misses.
  await client
    .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
    .catch(() => undefined);
}

async function attempt<T>(work: () => Promise<T>, failure: (error: unknown) => Error): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw failure(error);
  }
}

export function isNotImplemented(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return e?.$metadata?.httpStatusCode === 501 || e?.name === "NotImplemented";
}
