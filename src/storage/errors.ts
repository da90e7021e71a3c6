import { StorageError } from "../errors.ts";

// Errors both providers throw for the two outcomes callers branch on; everything else a
// provider refuses is a plain StorageError with a one-line message.

/** A put with ifNoneMatch found an object already at the key; nothing was written. */
export class ObjectExistsError extends StorageError {
  override name = "ObjectExistsError";
  constructor(
    readonly key: string,
    where: string,
    cause?: unknown,
  ) {
    super(`Object ${key} already exists in ${where}; it was left unchanged.`, undefined, cause);
  }
}

/**
 * The body ended with another length than PutOptions.contentLength announced (a download
 * cut short, usually). Thrown before the object becomes visible: nothing was stored.
 */
export class IncompleteBodyError extends StorageError {
  override name = "IncompleteBodyError";
  constructor(
    readonly key: string,
    readonly expected: number,
    readonly received: number,
  ) {
    super(`The body for ${key} had ${received} bytes instead of the ${expected} announced; nothing was stored.`);
  }
}

/** get or copy of a key that holds no object. */
export class ObjectNotFoundError extends StorageError {
  override name = "ObjectNotFoundError";
  constructor(
    readonly key: string,
    where: string,
    cause?: unknown,
  ) {
    super(`Object ${key} does not exist in ${where}.`, undefined, cause);
  }
}

/**
 * A storage failure that is not about one object (unreachable, full, refusing every write):
 * it concerns every write until the storage comes back.
 */
export function isStorageOutage(error: unknown): boolean {
  return (
    error instanceof StorageError &&
    !(
      error instanceof ObjectExistsError ||
      error instanceof ObjectNotFoundError ||
      error instanceof IncompleteBodyError
    )
  );
}
