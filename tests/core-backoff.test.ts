import { describe, expect, it } from "vitest";
import {
  BACKOFF,
  backoffDelay,
  isRetryableStatus,
  nextRetry,
  parseRetryAfter,
  type BackoffPolicy,
} from "../src/core/backoff.ts";

// One delay rule for the three kinds of work that retry; each table reads one policy.

describe("backoffDelay: downloads (full jitter, 0.5 s doubling, at most 10 s)", () => {
  const policy = BACKOFF.download;
  it.each([
    ["first retry, top of the range", 1, 0.999, undefined, 500],
    ["first retry, bottom of the range", 1, 0, undefined, 0],
    ["second retry doubles the ceiling", 2, 0.5, undefined, 500],
    ["third retry", 3, 0.5, undefined, 1_000],
    ["the ceiling is capped by maxDelayMs", 10, 0.999, undefined, 9_990],
    ["Retry-After is a minimum", 1, 0.1, 3_000, 3_000],
    ["a jittered delay above Retry-After wins", 4, 0.9, 1_000, 3_600],
  ] as const)("%s", (_, retry, random, retryAfterMs, expected) => {
    expect(backoffDelay(policy, retry, { retryAfterMs, random })).toBe(expected);
  });
});

describe("backoffDelay: the Replicate API (equal jitter, 0.5 s doubling, at most 8 s)", () => {
  const policy = BACKOFF.api;
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
    expect(backoffDelay(policy, attempt, { random })).toBe(expected);
  });
});

describe("backoffDelay: webhook deliveries (no jitter, from 5 s to 10 min)", () => {
  const policy = BACKOFF.delivery;
  it("waits 5 s after the first failure, doubling up to 10 min, and 10 min after that", () => {
    const waits = Array.from({ length: 10 }, (_, i) => backoffDelay(policy, i + 1));
    expect(waits).toEqual([5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000, 600_000, 600_000]);
  });
  it.each([0, 0.5, 0.999])("does not depend on chance (random %d)", (random) => {
    expect(backoffDelay(policy, 3, { random })).toBe(20_000);
  });
});

describe("nextRetry", () => {
  const api = BACKOFF.api;
  it.each<[string, BackoffPolicy, number, number, number | undefined, ReturnType<typeof nextRetry>]>([
    ["the first failure waits the backoff", api, 1, 0, undefined, { retry: true, delayMs: 500 }],
    ["a later one waits longer", api, 2, 500, undefined, { retry: true, delayMs: 1_000 }],
    ["Retry-After longer than the backoff is waited", api, 1, 0, 3_000, { retry: true, delayMs: 3_000 }],
    ["Retry-After: 0 still waits the backoff", api, 1, 0, 0, { retry: true, delayMs: 500 }],
    ["the last attempt is the last", api, 5, 1_000, 1_000, { retry: false, reason: "attempts" }],
    ["a wait past the budget is not made", api, 1, 0, 60_000, { retry: false, reason: "budget" }],
    ["the budget counts what was waited", api, 4, 27_000, undefined, { retry: false, reason: "budget" }],
    ["exactly the budget is allowed", api, 2, 20_000, 10_000, { retry: true, delayMs: 10_000 }],
    ["a policy without a budget", BACKOFF.download, 3, 1e9, undefined, { retry: true, delayMs: 2_000 }],
    ["deliveries: the 8th retry", BACKOFF.delivery, 8, 0, undefined, { retry: true, delayMs: 600_000 }],
    [
      "deliveries: no attempt limit (the retry window ends them)",
      BACKOFF.delivery,
      30,
      0,
      undefined,
      { retry: true, delayMs: 600_000 },
    ],
  ])("%s", (_name, policy, attempt, waitedMs, retryAfterMs, expected) => {
    // random 1 → the top of each range, so the table reads plainly.
    expect(nextRetry(policy, { attempt, waitedMs }, { retryAfterMs, random: 1 })).toEqual(expected);
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-11-30T12:00:00Z");
  it.each([
    ["seconds", "120", 120_000],
    ["zero", "0", 0],
    ["spaces around", " 5 ", 5_000],
    ["an HTTP date in the future", "Mon, 30 Nov 2026 12:00:30 GMT", 30_000],
    ["an HTTP date in the past", "Mon, 30 Nov 2026 11:00:00 GMT", 0],
    ["an RFC 850 date", "Monday, 30-Nov-26 12:00:05 GMT", 5_000],
    ["an asctime date", "Mon Nov 30 12:00:02 2026", 2_000],
    ["a fraction", "1.5", undefined],
    ["a negative number", "-3", undefined],
    ["garbage", "soon", undefined],
    ["empty", "", undefined],
    ["absent", undefined, undefined],
    ["null", null, undefined],
  ] as const)("%s: %j → %j ms", (_, value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe("isRetryableStatus (the Replicate API)", () => {
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
    [408, false],
    [410, false],
  ])("%i → %s", (status, expected) => expect(isRetryableStatus(status)).toBe(expected));
});
