import type { Readable } from "node:stream";

// One interface, two providers (local folder, any S3-compatible service). Keys always use
// "/" and are relative to the provider's root (bucket or folder).

export interface ObjectInfo {
  key: string;
  size: number;
  /** Provider's entity tag without quotes (S3 ETag; for local, an md5 hex of the content). */
  etag: string;
  contentType?: string;
  lastModified?: Date;
}

export interface PutOptions {
  contentType?: string;
  /** Known length, when the source tells it (lets providers skip multipart for small bodies). */
  contentLength?: number;
  /**
   * Refuse to replace an existing object: the put fails with ObjectExistsError. Providers
   * that cannot do this atomically check first and say so in their docs.
   */
  ifNoneMatch?: boolean;
  signal?: AbortSignal;
}

export interface CopyOptions {
  /**
   * The source as the caller already measured it (from a listing). S3 then skips its HEAD
   * and pins the copy to this ETag (CopySourceIfMatch), so the size returned is still the
   * size of the bytes copied; when the source changed since, it is measured again.
   */
  source?: { size: number; etag: string };
}

export interface GetOptions {
  /**
   * Only these bytes: offsets from the start, end included (as in an HTTP Range). The caller
   * keeps them within the object (start <= end < size, from head).
   */
  range?: { start: number; end: number };
}

export interface ListOptions {
  pageSize?: number;
  startAfter?: string;
  /**
   * false: keys and sizes are enough (doctor). The local provider then reads no sidecar and
   * hashes nothing, etag is "" and lastModified absent; S3 lists both anyway.
   */
  etags?: boolean;
}

/** A key deleteMany could not delete, and why. */
export interface DeleteFailure {
  key: string;
  error: Error;
}

export interface Storage {
  readonly provider: "local" | "aws";
  /** Bucket name, or the root folder for local. */
  readonly bucket: string;
  /**
   * Streams body to key. The object appears at key only when complete (multipart upload
   * on S3, write to a temporary file then rename locally): no reader sees half an object.
   * A Readable body belongs to put from then on: it is destroyed when the put ends, even
   * when refused. A body shorter or longer than contentLength stores nothing
   * (IncompleteBodyError).
   */
  put(key: string, body: Readable | Uint8Array, options?: PutOptions): Promise<ObjectInfo>;
  /** Server-side copy (no bytes through this process on S3). */
  copy(sourceKey: string, targetKey: string, options?: CopyOptions): Promise<ObjectInfo>;
  /** Metadata of key, or undefined when there is no such object. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Reads an object (or a range of it) as a stream; throws ObjectNotFoundError when missing. */
  get(key: string, options?: GetOptions): Promise<Readable>;
  /**
   * A URL from which a browser can GET key directly for the next expiresInSeconds (S3: a
   * presigned GET), or undefined when the provider has none (local: the caller streams it).
   * Nothing is checked or fetched: a missing key gives a URL that answers 404.
   */
  downloadUrl(key: string, options: { expiresInSeconds: number }): Promise<string | undefined>;
  /** Deletes key; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Deletes many keys (S3: DeleteObjects, 1,000 keys a request; one by one where the
   * server lacks it). Missing keys are not an error. Returns the keys that could not be
   * deleted; throws when the storage could not be asked at all.
   */
  deleteMany(keys: string[]): Promise<DeleteFailure[]>;
  /**
   * Every object under prefix, in key order (UTF-8 bytes, as S3 and compareKeys order them),
   * page by page (memory stays flat).
   */
  list(prefix?: string, options?: ListOptions): AsyncIterable<ObjectInfo>;
  /**
   * list, a page at a time (an S3 page; up to pageSize objects on local; never an empty
   * one): for callers that go through millions of objects, where a promise per object adds up.
   */
  listPages(prefix?: string, options?: ListOptions): AsyncIterable<ObjectInfo[]>;
  /** Checks the storage is reachable and usable; throws StorageError with a clear message. */
  check(): Promise<void>;
  /**
   * Removes what interrupted writes left behind and no write in flight can still use (the
   * local provider's temp files); returns how many. Providers without leftovers omit it
   * (S3 drops incomplete multipart uploads with a lifecycle rule).
   */
  removeStaleTemps?(): Promise<number>;
  close(): Promise<void>;
}
