import { setTimeout as sleepFor } from "node:timers/promises";
import Replicate from "replicate";
import type { Config } from "../config.ts";
import { requireReplicateToken } from "../config.ts";
import { parsePrediction, type Prediction } from "../core/prediction.ts";
import { predictionsSince } from "../core/recover-plan.ts";
import { BACKOFF, isRetryableStatus, nextRetry, parseRetryAfter, type BackoffPolicy } from "../core/backoff.ts";
import {
  badResponse,
  rateLimited,
  ReplicateError,
  unauthorized,
  unavailable,
  unknownPrediction,
  unreachable,
} from "./errors.ts";

// The Replicate API as genstore uses it, over the `replicate` package (1.4).
//
// Retries are ours. replicate 1.4's request() wraps fetch in withAutomaticRetries (lib/util.js),
// which for a GET answered 429 or 5xx calls fetch again up to 5 more times *without waiting*
// (its delay is a fraction of a millisecond, so its sleep is skipped), never reads Retry-After,
// swallows network errors between attempts and throws an ApiError only for the last answer.
// So the client gets a fetch that does the waiting itself (BACKOFF.api: backoff with jitter,
// Retry-After as a minimum, a time budget) and remembers its final outcome per request: the package's extra calls
// for the same request (same init object) get that outcome again without touching the
// network. A 404 is not retried by either; it becomes `unknown-prediction`.

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface RetryEvent {
  /** What was being fetched, for messages ("prediction abc", "the prediction list"). */
  what: string;
  /** The attempt that failed (1-based). */
  attempt: number;
  /** "HTTP 429", "HTTP 503", "connection refused (ECONNREFUSED)". */
  reason: string;
  delayMs: number;
}

export interface ReplicateClientOptions {
  token: string;
  /** e.g. https://api.replicate.com/v1 */
  baseUrl: string;
  /** The transport (tests may pass one); default globalThis.fetch. */
  fetch?: FetchLike;
  retry?: Partial<BackoffPolicy>;
  /** One attempt's time limit (default 30 s); a timeout is retried like a network error. */
  requestTimeoutMs?: number;
  onRetry?: (event: RetryEvent) => void;
  /** Injected for tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

export interface ReplicateApi {
  readonly baseUrl: string;
  /** GET /predictions/{id}; throws ReplicateError (kind unknown-prediction for a 404). */
  getPrediction(id: string, options?: { signal?: AbortSignal }): Promise<Prediction>;
  /**
   * GET /predictions page by page (newest first), each page cut to the predictions created
   * at or after `since`; stops at the first page that reaches older ones.
   */
  listPredictionsSince(since: Date, options?: { signal?: AbortSignal }): AsyncGenerator<Prediction[]>;
}

export function createReplicateClient(options: ReplicateClientOptions): ReplicateApi {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const policy: BackoffPolicy = { ...BACKOFF.api, ...options.retry };
  const transport: FetchLike = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const timeoutMs = options.requestTimeoutMs ?? 30_000;
  const sleep = options.sleep ?? ((ms: number, signal?: AbortSignal) => sleepFor(ms, undefined, { signal }));
  const random = options.random ?? Math.random;
  const outcomes = new WeakMap<object, Promise<Response>>();

  async function attemptAll(url: string, init: RequestInit): Promise<Response> {
    const what = describeUrl(url, baseUrl);
    const signal = init.signal ?? undefined;
    let waitedMs = 0;
    let lastRetryAfter: number | undefined;
    for (let attempt = 1; ; attempt += 1) {
      signal?.throwIfAborted();
      let response: Response | undefined;
      let failure: unknown;
      try {
        const timeout = AbortSignal.timeout(timeoutMs);
        response = await transport(url, { ...init, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        failure = error;
      }
      if (response && !isRetryableStatus(response.status)) return response;
      const retryAfterMs = response ? parseRetryAfter(response.headers.get("retry-after"), Date.now()) : undefined;
      if (retryAfterMs !== undefined) lastRetryAfter = retryAfterMs;
      const decision = nextRetry(policy, { attempt, waitedMs }, { retryAfterMs, random: random() });
      if (!decision.retry) {
        await response?.body?.cancel().catch(() => {});
        if (!response) throw unreachable(baseUrl, failure, attempt);
        if (response.status === 429)
          throw rateLimited(what, attempt, waitedMs, decision.reason === "budget" ? lastRetryAfter : undefined);
        throw unavailable(what, response.status, attempt);
      }
      await response?.body?.cancel().catch(() => {});
      options.onRetry?.({
        what,
        attempt,
        reason: response ? `HTTP ${response.status}` : networkReasonShort(failure),
        delayMs: decision.delayMs,
      });
      try {
        await sleep(decision.delayMs, signal);
      } catch (error) {
        signal?.throwIfAborted(); // the caller's reason, as when a request is aborted
        throw error;
      }
      waitedMs += decision.delayMs;
    }
  }

  const retryingFetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    let outcome = outcomes.get(init);
    if (!outcome) {
      outcome = attemptAll(String(input instanceof Request ? input.url : input), init);
      outcome.catch(() => {});
      outcomes.set(init, outcome);
    }
    return outcome.then((response) => response.clone());
  };

  const client = new Replicate({ auth: options.token, baseUrl, fetch: retryingFetch, useFileOutput: false });

  /** Turns the package's ApiError into ours; anything else (ours, an abort) passes through. */
  function translate(error: unknown, what: string, id?: string): unknown {
    if (error instanceof ReplicateError) return error;
    const apiError = error as { name?: string; response?: Response };
    if (apiError?.name === "ApiError" && apiError.response) {
      const status = apiError.response.status;
      if (status === 401 || status === 403) return unauthorized(status, baseUrl);
      if (status === 404 && id !== undefined) return unknownPrediction(id);
      return badResponse(what, firstLine((error as Error).message), status);
    }
    return error;
  }

  async function json(response: Response, what: string): Promise<unknown> {
    try {
      return await response.json();
    } catch {
      throw badResponse(what, "the body is not JSON", response.status);
    }
  }

  function toPrediction(value: unknown, what: string): Prediction {
    const parsed = parsePrediction(value);
    if (!parsed.ok) throw badResponse(what, parsed.reason);
    return parsed.prediction;
  }

  return {
    baseUrl,

    async getPrediction(id, { signal } = {}) {
      const what = `prediction ${id}`;
      let response: Response;
      try {
        response = await client.request(`/predictions/${encodeURIComponent(id)}`, { method: "GET", signal });
      } catch (error) {
        throw translate(error, what, id);
      }
      const prediction = toPrediction(await json(response, what), what);
      if (prediction.id !== id) throw badResponse(what, `it describes prediction ${prediction.id}`);
      return prediction;
    },

    async *listPredictionsSince(since, { signal } = {}) {
      const what = "the prediction list";
      let route: string = "/predictions";
      const seen = new Set<string>();
      for (;;) {
        let body: unknown;
        try {
          body = await json(await client.request(route, { method: "GET", signal }), what);
        } catch (error) {
          throw translate(error, what);
        }
        const page = body as { results?: unknown; next?: unknown };
        if (!page || !Array.isArray(page.results)) throw badResponse(what, "it has no results array");
        const predictions = page.results.map((item, i) => toPrediction(item, `${what} (item ${i + 1})`));
        const { keep, done } = predictionsSince(predictions, since);
        if (keep.length > 0) yield keep;
        if (done || page.next === null || page.next === undefined || page.next === "") return;
        if (typeof page.next !== "string") throw badResponse(what, "its next link is not a string");
        route = checkNextLink(page.next, baseUrl, what);
        if (seen.has(route)) throw badResponse(what, "its next link repeats an earlier page");
        seen.add(route);
        signal?.throwIfAborted();
      }
    },
  };
}

/** The client for a loaded config (REPLICATE_API_TOKEN is required; a ConfigError says so). */
export function replicateClientFromConfig(
  config: Config,
  extra: Omit<ReplicateClientOptions, "token" | "baseUrl"> = {},
): ReplicateApi {
  return createReplicateClient({ token: requireReplicateToken(config), baseUrl: config.replicate.baseUrl, ...extra });
}

/**
 * The token travels with every request, so a `next` link is followed only when it stays on
 * the API's own origin and path (a wrong or hostile answer must not send it elsewhere).
 */
function checkNextLink(next: string, baseUrl: string, what: string): string {
  let url: URL;
  try {
    url = new URL(next, `${baseUrl}/`);
  } catch {
    throw badResponse(what, "its next link is not a URL");
  }
  const base = new URL(`${baseUrl}/`);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname)) {
    throw badResponse(what, `its next link leaves ${base.origin}${base.pathname} (${url.origin}${url.pathname})`);
  }
  return url.toString();
}

function describeUrl(url: string, baseUrl: string): string {
  const path = url.startsWith(baseUrl) ? url.slice(baseUrl.length) : url;
  const match = /^\/predictions\/([^/?#]+)/.exec(path);
  if (match) return `prediction ${decodeURIComponent(match[1]!)}`;
  if (/^\/predictions(\?|$)/.test(path)) return "the prediction list";
  return path;
}

function networkReasonShort(error: unknown): string {
  const e = error as { name?: string; code?: string; cause?: { code?: string } };
  if (e?.name === "TimeoutError") return "timeout";
  return e?.cause?.code ?? e?.code ?? "network error";
}

function firstLine(text: string): string {
  return (text.split("\n")[0] ?? text).slice(0, 300);
}
