import { ExitCode, UserError } from "../errors.ts";

// What can go wrong with one output file, as typed errors the callers branch on:
// `retryable` says whether trying the same prediction again later can succeed (the webhook
// worker retries those; the others are final answers about the file).

export type OutputProblem = "refused" | "expired" | "too-large" | "unavailable" | "rejected" | "conflict" | "not-media";

export class OutputError extends UserError {
  override name = "OutputError";
  constructor(
    readonly url: string,
    readonly problem: OutputProblem,
    readonly retryable: boolean,
    message: string,
    options: { hint?: string; exitCode: ExitCode; cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Not downloaded: the URL, a redirect or the address it resolves to is not allowed (SSRF guard). */
export class OutputRefusedError extends OutputError {
  override name = "OutputRefusedError";
  constructor(url: string, reason: string) {
    super(url, "refused", false, `Refused to download output ${url}: ${reason}.`, {
      hint: "Outputs are only fetched from GENSTORE_OUTPUT_HOSTS (default replicate.delivery); add the host there if it is trusted.",
      exitCode: ExitCode.refused,
    });
  }
}

/** 404 or 410: the file is gone (Replicate deletes API outputs about an hour after completion). */
export class OutputExpiredError extends OutputError {
  override name = "OutputExpiredError";
  constructor(
    url: string,
    readonly status: number,
  ) {
    super(
      url,
      "expired",
      false,
      `Output ${url} answered ${status}: the file is gone (Replicate deletes API outputs about an hour after completion).`,
      {
        hint: "The row is kept and marked; run the prediction again on Replicate if the output is needed.",
        exitCode: ExitCode.partial,
      },
    );
  }
}

/** Larger than GENSTORE_MAX_OUTPUT_BYTES (announced or counted while streaming): nothing was stored. */
export class OutputTooLargeError extends OutputError {
  override name = "OutputTooLargeError";
  constructor(url: string, maxBytes: number, size: number | "more") {
    const what = size === "more" ? `sent more than ${maxBytes} bytes` : `is ${size} bytes`;
    super(url, "too-large", false, `Output ${url} ${what}, over the limit of ${maxBytes} bytes; nothing was stored.`, {
      hint: "Raise GENSTORE_MAX_OUTPUT_BYTES if outputs this large are expected, then run recover for the prediction.",
      exitCode: ExitCode.refused,
    });
  }
}

/** Network errors, timeouts, 5xx or 429 that outlasted the retries, or a body cut short: try again later. */
export class OutputUnavailableError extends OutputError {
  override name = "OutputUnavailableError";
  constructor(url: string, reason: string, cause?: unknown) {
    super(url, "unavailable", true, `Could not download output ${url}: ${reason}.`, {
      hint: "Nothing was stored for it; run recover for the prediction again (before its outputs expire, about an hour after completion).",
      exitCode: ExitCode.replicate,
      cause,
    });
  }
}

/** Another 4xx (401, 403, …): the server refuses the request; retrying the same URL will not help. */
export class OutputRejectedError extends OutputError {
  override name = "OutputRejectedError";
  constructor(
    url: string,
    readonly status: number,
  ) {
    super(url, "rejected", false, `Output ${url} answered ${status}; nothing was stored.`, {
      hint: "Check that the URL is a Replicate output URL; recover fetches fresh URLs from the API.",
      exitCode: ExitCode.replicate,
    });
  }
}

/** The output's bytes are no image or video (an error page served as image/png): nothing was stored. */
export class OutputNotMediaError extends OutputError {
  override name = "OutputNotMediaError";
  constructor(url: string, what: string, servedAs: string | null) {
    super(
      url,
      "not-media",
      false,
      `Output ${url} is not an image or a video: ${what}${servedAs ? `, served as ${servedAs}` : ""}; nothing was stored.`,
      {
        hint: "Check what the output host serves at that URL; genstore stores PNG, JPEG, GIF, WebP, AVIF/HEIC, MP4/QuickTime and WebM.",
        exitCode: ExitCode.refused,
      },
    );
  }
}

/** A different object already sits at the output's key: it was left alone, and this output not stored. */
export class OutputConflictError extends OutputError {
  override name = "OutputConflictError";
  constructor(
    url: string,
    readonly key: string,
    readonly existingSize: number,
    readonly downloadedSize: number,
  ) {
    super(
      url,
      "conflict",
      false,
      `A different object (${existingSize} bytes) already exists at ${key}; output ${url} (${downloadedSize} bytes) was not stored over it.`,
      {
        hint: "Inspect the object at that key; move it away and run recover for the prediction to store the output.",
        exitCode: ExitCode.storage,
      },
    );
  }
}

/** The prediction cannot be placed (no userId for an orphan, an unsafe id): nothing was done. */
export class IngestRefusedError extends UserError {
  override name = "IngestRefusedError";
  readonly retryable = false;
  constructor(
    readonly predictionId: string,
    reason: string,
  ) {
    super(`Refused prediction ${predictionId}: ${reason}.`, {
      // The library's words; `recover` says --user instead (src/jobs/recover.ts).
      hint: "Register the webhook as …/api/webhooks/replicate?userId=<id>, or pass `user` (the owner of predictions that name none) to the handler or ingestPrediction.",
      exitCode: ExitCode.refused,
    });
  }
}
