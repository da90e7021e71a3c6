import { ExitCode, UserError } from "../errors.ts";

// The Replicate API's failures as genstore reports them. `unknown-prediction` concerns one
// id (the run goes on); the others mean the API is unusable right now (exit code 6).

export type ReplicateErrorKind =
  "unauthorized" | "rate-limited" | "unavailable" | "unreachable" | "bad-response" | "unknown-prediction";

export class ReplicateError extends UserError {
  override name = "ReplicateError";
  constructor(
    readonly kind: ReplicateErrorKind,
    message: string,
    options: { hint?: string; cause?: unknown; status?: number; attempts?: number } = {},
  ) {
    super(message, {
      hint: options.hint,
      cause: options.cause,
      exitCode: kind === "unknown-prediction" ? ExitCode.partial : ExitCode.replicate,
    });
    this.status = options.status;
    this.attempts = options.attempts;
  }
  readonly status?: number;
  readonly attempts?: number;
}

export function unauthorized(status: number, baseUrl: string): ReplicateError {
  return new ReplicateError(
    "unauthorized",
    `REPLICATE_API_TOKEN was refused by the Replicate API at ${baseUrl} (HTTP ${status}).`,
    {
      status,
      hint: "Check the token at replicate.com/account/api-tokens: set the whole r8_… value in REPLICATE_API_TOKEN.",
    },
  );
}

export function unknownPrediction(id: string): ReplicateError {
  return new ReplicateError(
    "unknown-prediction",
    `Unknown prediction ${id}: the Replicate API has no prediction with this id (HTTP 404).`,
    {
      status: 404,
      hint: "Check the id; a prediction is only visible to the account whose token made it.",
    },
  );
}

export function rateLimited(
  what: string,
  attempts: number,
  waitedMs: number,
  retryAfterMs: number | undefined,
): ReplicateError {
  const asked = retryAfterMs !== undefined ? `; it asked to wait ${Math.ceil(retryAfterMs / 1000)}s more` : "";
  return new ReplicateError(
    "rate-limited",
    `The Replicate API kept throttling ${what} (HTTP 429 after ${attempts} attempt${attempts === 1 ? "" : "s"} over ${(waitedMs / 1000).toFixed(1)}s${asked}).`,
    { status: 429, attempts, hint: "Wait a minute and run again, or lower --concurrency." },
  );
}

export function unavailable(what: string, status: number, attempts: number): ReplicateError {
  return new ReplicateError(
    "unavailable",
    `The Replicate API kept failing ${what} (HTTP ${status} after ${attempts} attempt${attempts === 1 ? "" : "s"}).`,
    {
      status,
      attempts,
      hint: "Replicate may be having an outage (replicatestatus.com); run again later.",
    },
  );
}

export function unreachable(baseUrl: string, cause: unknown, attempts: number): ReplicateError {
  return new ReplicateError(
    "unreachable",
    `Cannot reach the Replicate API at ${baseUrl}: ${networkReason(cause)} (after ${attempts} attempt${attempts === 1 ? "" : "s"}).`,
    {
      cause,
      attempts,
      hint: "Check the network, a proxy, and REPLICATE_API_BASE_URL.",
    },
  );
}

export function badResponse(what: string, reason: string, status?: number): ReplicateError {
  return new ReplicateError(
    "bad-response",
    `The Replicate API answered ${what} with something genstore cannot use${status ? ` (HTTP ${status})` : ""}: ${reason}.`,
    {
      status,
      hint: "Check REPLICATE_API_BASE_URL points at the Replicate API (…/v1).",
    },
  );
}

/** "connection refused (ECONNREFUSED)" rather than fetch's bare "fetch failed". */
export function networkReason(error: unknown): string {
  const e = error as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === "TimeoutError") return "no answer in time";
  const code = e?.cause?.code ?? e?.code;
  const known: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ECONNRESET: "connection reset",
    ENOTFOUND: "host not found",
    EAI_AGAIN: "DNS lookup failed",
    ETIMEDOUT: "connection timed out",
    UND_ERR_SOCKET: "connection closed",
    UND_ERR_CONNECT_TIMEOUT: "connection timed out",
  };
  if (code && known[code]) return `${known[code]} (${code})`;
  const message = e?.cause?.message ?? e?.message ?? String(error);
  return code ? `${message} (${code})` : message;
}
