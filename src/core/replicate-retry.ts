// When genstore asks the Replicate API again and how long it waits first: exponential
// backoff with jitter, Retry-After honoured, and an overall bound so a throttled run ends
// with a clear message instead of waiting forever. Pure: the caller sleeps and fetches.
// Retry-After is read by parseRetryAfter in retry.ts (one rule for downloads and the API);
// output downloads have their own backoff there.

export interface RetryPolicy {
  /** Attempts in all, the first one included. */
  maxAttempts: number;
  /** The wait before the second attempt; it doubles each time after. */
  baseDelayMs: number;
  /** No single backoff wait is longer than this. */
  maxDelayMs: number;
  /** The waits of one request add up to at most this; a wait that would pass it is not made. */
  budgetMs: number;
}

/**
 * 5 attempts, waits of about 0.5 s, 1 s, 2 s, 4 s (each between half and all of that, at
 * random), at most 30 s of waiting for one request. Replicate allows 3000 GETs a minute, so
 * a 429 clears within seconds; its Retry-After, when sent, replaces the backoff wait.
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 5,
  baseDelayMs: 500,
  maxDelayMs: 8_000,
  budgetMs: 30_000,
};

/** 429 and every 5xx are worth another try; any other status is the answer. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599);
}

/**
 * The backoff wait after failed attempt number `attempt` (1-based): base·2^(attempt-1), capped,
 * then "equal jitter": half of it fixed, the other half scaled by random ∈ [0, 1), so many
 * clients that failed together do not come back together, yet none retries at once.
 */
export function backoffDelay(attempt: number, policy: RetryPolicy, random: number): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential / 2 + (exponential / 2) * Math.min(Math.max(random, 0), 1));
}

export type AttemptOutcome = { kind: "response"; status: number; retryAfterMs?: number } | { kind: "network" };

export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: "done" | "attempts" | "budget" };

/**
 * What to do after attempt number `attempt` ended with `outcome`, having already waited
 * `waitedMs` for this request. A Retry-After wins over the backoff (Replicate says when);
 * a wait that would pass the budget is not made: the caller reports the failure now.
 */
export function decideRetry(
  outcome: AttemptOutcome,
  state: { attempt: number; waitedMs: number },
  policy: RetryPolicy,
  random: number,
): RetryDecision {
  if (outcome.kind === "response" && !isRetryableStatus(outcome.status)) return { retry: false, reason: "done" };
  if (state.attempt >= policy.maxAttempts) return { retry: false, reason: "attempts" };
  const delayMs =
    outcome.kind === "response" && outcome.retryAfterMs !== undefined
      ? outcome.retryAfterMs
      : backoffDelay(state.attempt, policy, random);
  if (state.waitedMs + delayMs > policy.budgetMs) return { retry: false, reason: "budget" };
  return { retry: true, delayMs };
}
