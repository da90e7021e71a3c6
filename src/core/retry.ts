// How downloads of output files react to each HTTP answer, and how long they wait before
// trying again. Pure rules; src/pipeline/download.ts performs the requests.

export type AnswerKind = "ok" | "redirect" | "expired" | "retry" | "fail";

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * What a download does with an HTTP status:
 *   2xx → ok; 301/302/303/307/308 → redirect (checked again, followed by hand);
 *   404/410 → expired (Replicate deleted the file: retrying cannot help);
 *   408, 425, 429 and 5xx → retry with backoff; anything else → fail.
 */
export function answerKind(status: number): AnswerKind {
  if (status >= 200 && status < 300) return "ok";
  if (REDIRECTS.has(status)) return "redirect";
  if (status === 404 || status === 410) return "expired";
  if (status === 408 || status === 425 || status === 429 || (status >= 500 && status < 600)) return "retry";
  return "fail";
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

export interface BackoffPolicy {
  /** Delay ceiling of the first retry, doubled for each later one. */
  baseDelayMs: number;
  /** No single wait is longer than this (Retry-After included: a longer one gives up). */
  maxDelayMs: number;
}

/**
 * The wait before retry number `retry` (1 for the first retry): "full jitter", a random
 * delay between 0 and min(maxDelayMs, baseDelayMs · 2^(retry-1)), so that many clients
 * throttled at once do not come back at once. A server's Retry-After is a minimum.
 * `random` returns a number in [0, 1).
 */
export function retryDelay(
  retry: number,
  policy: BackoffPolicy,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  const jittered = Math.floor(random() * ceiling);
  return Math.max(jittered, retryAfterMs ?? 0);
}
