// What the user caused is a UserError (one line, a hint, a documented exit code, no stack).
// Anything else is a bug: its stack is printed only with --verbose.

/** Exit codes, documented in the README. */
export const ExitCode = {
  ok: 0,
  /** An unexpected error: a bug. Rerun with --verbose and report it. */
  internal: 1,
  /** Unknown command, flag or value. */
  usage: 2,
  /** A missing or invalid setting (environment variable or flag). */
  config: 3,
  /** The database is unreachable, not migrated, or from another version. */
  database: 4,
  /** The storage provider is unreachable or refused an operation. */
  storage: 5,
  /** The Replicate API is unreachable, refused the token, or kept throttling. */
  replicate: 6,
  /** The run finished but some items failed (the summary names them). */
  partial: 7,
  /** Input refused as unsafe or invalid (a userId that escapes its folder, a bad id). */
  refused: 8,
  /** Another run of the same job holds its lock; try again when it ends. */
  busy: 9,
  /** Stopped by Ctrl-C or SIGTERM; rerunning continues where it stopped. */
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class UserError extends Error {
  override name = "UserError";
  constructor(
    message: string,
    readonly options: { hint?: string; exitCode?: ExitCode; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
  }
  get exitCode(): ExitCode {
    return this.options.exitCode ?? ExitCode.usage;
  }
  get hint(): string | undefined {
    return this.options.hint;
  }
}

export class ConfigError extends UserError {
  override name = "ConfigError";
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: ExitCode.config });
  }
}

export class DatabaseError extends UserError {
  override name = "DatabaseError";
  constructor(
    message: string,
    hint?: string,
    cause?: unknown,
    readonly details: { code?: string; retryable?: boolean } = {},
  ) {
    super(message, { hint, exitCode: ExitCode.database, cause });
  }
  /** The SQLSTATE (or network error code) when the driver gave one. */
  get code(): string | undefined {
    return this.details.code;
  }
  /** Whether a later attempt can succeed (a connection lost) or not (a value the column cannot hold). */
  get retryable(): boolean {
    return this.details.retryable ?? true;
  }
}

export class StorageError extends UserError {
  override name = "StorageError";
  constructor(message: string, hint?: string, cause?: unknown) {
    super(message, { hint, exitCode: ExitCode.storage, cause });
  }
}

/** Thrown when a run finishes with some failed items; the result was already rendered. */
export class PartialFailure extends UserError {
  override name = "PartialFailure";
  constructor(message: string) {
    super(message, { exitCode: ExitCode.partial });
  }
}

export class Interrupted extends UserError {
  override name = "Interrupted";
  constructor(message = "Interrupted.", hint?: string) {
    super(message, { hint, exitCode: ExitCode.interrupted });
  }
}

/** What a file-system error code means for the folder genstore was told to use. */
const FOLDER_PROBLEMS: Record<string, string> = {
  ENOTDIR: "a part of that path is a file, not a folder",
  EEXIST: "a file is in the way",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "the file system is read-only",
  ENOSPC: "the disk is full",
  EDQUOT: "the disk quota is used up",
  ENOENT: "a folder on that path is missing and cannot be created (a read-only mount?)",
};

/**
 * A file-system error on a folder the configuration named (GENSTORE_HOME under a file, on a
 * read-only mount, without permission) is the operator's to fix, not a bug in genstore:
 * it becomes a configuration error naming the path.
 */
function folderError(error: unknown): UserError | undefined {
  const e = error as NodeJS.ErrnoException | undefined;
  if (!(error instanceof Error) || typeof e?.code !== "string" || typeof e.path !== "string") return undefined;
  const problem = FOLDER_PROBLEMS[e.code];
  if (problem === undefined || !["mkdir", "open", "access", "rmdir", "scandir", "stat"].includes(e.syscall ?? ""))
    return undefined;
  const verb = e.syscall === "mkdir" ? "create the folder" : "use";
  return new UserError(`Cannot ${verb} ${e.path}: ${problem} (${e.code}).`, {
    hint: "GENSTORE_HOME (or --home) must be a folder genstore can create and write to: check the path, the mount and its permissions.",
    exitCode: ExitCode.config,
    cause: error,
  });
}

/** The one-line message for any thrown value. */
export function describeError(error: unknown): { message: string; hint?: string; exitCode: ExitCode; isBug: boolean } {
  const folder = folderError(error);
  if (folder) return { message: folder.message, hint: folder.hint, exitCode: folder.exitCode, isBug: false };
  if (error instanceof UserError) {
    return { message: error.message, hint: error.hint, exitCode: error.exitCode, isBug: false };
  }
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return {
    message: `Unexpected error: ${firstLine(message)}`,
    hint: "This is a bug in genstore. Rerun with --verbose for the stack trace and report it.",
    exitCode: ExitCode.internal,
    isBug: true,
  };
}

function firstLine(text: string): string {
  const line = text.split("\n").find((l) => l.trim() !== "") ?? text;
  return line.trim();
}
