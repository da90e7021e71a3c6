// How long genstore waits before trying something again: one delay rule, and the policies
// of the three kinds of work that retry, as named values. Pure: callers sleep and retry.
//
//   download  an output file: 4 attempts, waits up to 0.5 s, 1 s, 2 s (full jitter), none
//             longer than 10 s (a longer Retry-After gives up: src/pipeline/download.ts)
//   api       the Replicate API: 5 attempts, waits of about 0.5 s, 1 s, 2 s, 4 s (each between
//             half and all of that), at most 30 s of waiting for one request
//   delivery  a webhook delivery in the queue: 5 s after the first failure, doubling up to
//             10 min (5 s, 10 s, 20 s … 320 s, 10 min, 10 min …), no jitter (the queue spreads
//             them already, and an operator reads the times in the log); no attempt limit: its
//             retry window ends it (src/core/delivery-retry.ts)

export interface BackoffPolicy {
  /** Attempts in all, the first one included. */
  maxAttempts: number;
  /** The ceiling of the wait before the second attempt; it doubles for each later one. */
  baseDelayMs: number;
  /** No ceiling is higher than this. */
  maxDelayMs: number;
  /**
   * The random share of each wait: 1 is "full jitter" (anywhere from 0 to the ceiling), 0.5
   * "equal jitter" (from half the ceiling to all of it), 0 none (the ceiling itself). Jitter
   * keeps many clients that failed together from coming back together.
   */
  jitter: number;
  /** The waits for one piece of work add up to at most this; a wait that would pass it is not made. */
  budgetMs?: number;
}

export const BACKOFF = {
  download: { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 10_000, jitter: 1 },
  // Replicate allows 3000 GETs a minute, so a 429 clears within seconds.
  api: { maxAttempts: 5, baseDelayMs: 500, maxDelayMs: 8_000, jitter: 0.5, budgetMs: 30_000 },
  delivery: { maxAttempts: Number.POSITIVE_INFINITY, baseDelayMs: 5_000, maxDelayMs: 10 * 60_000, jitter: 0 },
} as const satisfies Record<string, BackoffPolicy>;

export interface DelayOptions {
  /** What the server's Retry-After asked for (parseRetryAfter): the wait is never shorter. */
  retryAfterMs?: number;
  /** A number in [0, 1) (default Math.random()); tests pass their own. */
  random?: number;
}

/**
 * The wait before retry number `retry` (1 after the first attempt failed): a ceiling of
 * baseDelayMs · 2^(retry-1), capped at maxDelayMs, less its random share; a Retry-After is
 * a minimum.
 */
export function backoffDelay(policy: BackoffPolicy, retry: number, options: DelayOptions = {}): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  const random = Math.min(Math.max(options.random ?? Math.random(), 0), 1);
  const delay = Math.round(ceiling * (1 - policy.jitter) + ceiling * policy.jitter * random);
  return Math.max(delay, options.retryAfterMs ?? 0);
}

export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: "attempts" | "budget" };

/**
 * After failed attempt number `attempt`, having already waited `waitedMs` for this piece of
 * work: how long to wait before the next attempt, or why not to make one.
 */
export function nextRetry(
  policy: BackoffPolicy,
  state: { attempt: number; waitedMs?: number },
  options: DelayOptions = {},
): RetryDecision {
  if (state.attempt >= policy.maxAttempts) return { retry: false, reason: "attempts" };
  const delayMs = backoffDelay(policy, state.attempt, options);
  if (policy.budgetMs !== undefined && (state.waitedMs ?? 0) + delayMs > policy.budgetMs)
    return { retry: false, reason: "budget" };
  return { retry: true, delayMs };
}

/**
 * Retry-After as milliseconds from now: delta-seconds ("120") or an HTTP date. Undefined
 * when absent or unreadable; a date in the past gives 0.
 */
export function parseRetryAfter(value: string | undefined | null, now: number = Date.now()): number | undefined {
  if (value === undefined || value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined; // "1.5", "-3": not a valid Retry-After
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The Replicate API's answers worth another attempt: 429 and every 5xx; any other status is the answer. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599);
}
