import { describe, expect, it } from "vitest";
import {
  backoffDelay,
  decideRetry,
  DEFAULT_RETRY_POLICY,
  isRetryableStatus,
  type AttemptOutcome,
} from "../src/core/replicate-retry.ts";
import { parseRetryAfter } from "../src/core/retry.ts";

const NOW = Date.parse("2026-11-30T12:00:00Z");
const policy = DEFAULT_RETRY_POLICY;

describe("parseRetryAfter (shared with downloads) as the API client reads it", () => {
  it.each([
    ["120", 120_000],
    ["0", 0],
    [" 3 ", 3_000],
    ["Mon, 30 Nov 2026 12:00:10 GMT", 10_000],
    ["Mon, 30 Nov 2026 11:59:00 GMT", 0],
    ["Monday, 30-Nov-26 12:00:05 GMT", 5_000],
    ["Mon Nov 30 12:00:02 2026", 2_000],
    ["1.5", undefined],
    ["-1", undefined],
    ["soon", undefined],
    ["", undefined],
    [null, undefined],
    [undefined, undefined],
  ])("%j → %s ms", (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });
});

describe("backoffDelay (equal jitter, doubling, capped)", () => {
  it.each([
    [1, 0, 250],
    [1, 0.999999, 500],
    [2, 0, 500],
    [3, 0.5, 1_500],
    [4, 1, 4_000],
    [5, 0, 4_000],
    [10, 1, 8_000],
    [10, 0, 4_000],
  ])("after attempt %i with random %d: %i ms", (attempt, random, expected) => {
    expect(backoffDelay(attempt, policy, random)).toBe(expected);
  });
});

describe("isRetryableStatus", () => {
  it.each([
    [429, true],
    [500, true],
    [502, true],
    [503, true],
    [599, true],
    [200, false],
    [400, false],
    [401, false],
    [403, false],
    [404, false],
    [410, false],
  ])("%i → %s", (status, expected) => expect(isRetryableStatus(status)).toBe(expected));
});

describe("decideRetry", () => {
  const r429 = (retryAfterMs?: number): AttemptOutcome => ({ kind: "response", status: 429, retryAfterMs });
  it.each<[string, AttemptOutcome, number, number, ReturnType<typeof decideRetry>]>([
    ["a 404 is the answer", { kind: "response", status: 404 }, 1, 0, { retry: false, reason: "done" }],
    ["a 200 is the answer", { kind: "response", status: 200 }, 1, 0, { retry: false, reason: "done" }],
    ["a 503 waits the backoff", { kind: "response", status: 503 }, 1, 0, { retry: true, delayMs: 500 }],
    ["a network error waits the backoff", { kind: "network" }, 2, 500, { retry: true, delayMs: 1_000 }],
    ["a 429 waits what Retry-After says", r429(3_000), 1, 0, { retry: true, delayMs: 3_000 }],
    ["Retry-After: 0 retries at once", r429(0), 1, 0, { retry: true, delayMs: 0 }],
    ["a 429 without Retry-After backs off", r429(), 3, 1_500, { retry: true, delayMs: 2_000 }],
    ["the last attempt is the last", r429(1_000), 5, 1_000, { retry: false, reason: "attempts" }],
    ["a wait past the budget is not made", r429(60_000), 1, 0, { retry: false, reason: "budget" }],
    ["the budget counts what was waited", { kind: "network" }, 4, 27_000, { retry: false, reason: "budget" }],
    ["exactly the budget is allowed", r429(10_000), 2, 20_000, { retry: true, delayMs: 10_000 }],
  ])("%s", (_name, outcome, attempt, waitedMs, expected) => {
    // random 1 → the full backoff (exponential), so the table reads plainly.
    expect(decideRetry(outcome, { attempt, waitedMs }, policy, 1)).toEqual(expected);
  });
});
