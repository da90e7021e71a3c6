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
  /** doctor: the scan found problems that remain (not repaired, or no --repair). */
  problems: 10,
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

/** The one-line message for any thrown value. */
export function describeError(error: unknown): { message: string; hint?: string; exitCode: ExitCode; isBug: boolean } {
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
