import { describe, expect, it } from "vitest";
import { BACKOFF } from "../src/core/backoff.ts";
import {
  decideDeliveryRetry,
  maxDeliveryAttempts,
  windowEndedReason,
  windowStart,
} from "../src/core/delivery-retry.ts";

// A delivery that failed for a reason a retry can fix is retried for as long as its output can
// still exist: an hour (by default) from the prediction's completed_at, whatever the number of attempts.

const HOUR = 3_600_000;
const completedAt = "2026-11-20T10:00:04.000Z";
const received = new Date("2026-11-20T10:00:05.000Z");
const body = { id: "p1", status: "succeeded", completed_at: completedAt };
const at = (minutes: number) => new Date(Date.parse(completedAt) + minutes * 60_000);

describe("decideDeliveryRetry", () => {
  const policy = BACKOFF.delivery;
  it.each<[string, { attempt: number; now: Date; permanent?: boolean; body?: unknown }, unknown]>([
    ["the first failure waits 5 s", { attempt: 1, now: at(0) }, { retry: true, delayMs: 5_000 }],
    ["the 8th waits 10 min", { attempt: 8, now: at(11) }, { retry: true, delayMs: 600_000 }],
    ["the 12th still waits, 40 min in", { attempt: 12, now: at(40) }, { retry: true, delayMs: 600_000 }],
    ["the last wait ends on the window's end", { attempt: 13, now: at(55) }, { retry: true, delayMs: 300_000 }],
    ["past the window: given up", { attempt: 14, now: at(60) }, { retry: false, reason: "window" }],
    [
      "a permanent error fails at once",
      { attempt: 1, now: at(0), permanent: true },
      { retry: false, reason: "permanent" },
    ],
    ["a late delivery still gets 3 attempts", { attempt: 2, now: at(90) }, { retry: true, delayMs: 10_000 }],
    ["…and no more", { attempt: 3, now: at(90) }, { retry: false, reason: "window" }],
    [
      "no completed_at: the window starts when the delivery arrived",
      { attempt: 9, now: new Date(received.getTime() + 59 * 60_000), body: { id: "p1", status: "processing" } },
      { retry: true, delayMs: 60_000 },
    ],
  ])("%s", (_name, failure, expected) => {
    const decision = decideDeliveryRetry(policy, HOUR, {
      attempt: failure.attempt,
      permanent: failure.permanent ?? false,
      body: failure.body ?? body,
      receivedAt: received,
      now: failure.now,
    });
    expect(decision).toMatchObject(expected as object);
  });

  it("names the window's end and where it started", () => {
    const decision = decideDeliveryRetry(policy, HOUR, {
      attempt: 20,
      permanent: false,
      body,
      receivedAt: received,
      now: at(61),
    });
    expect(decision).toEqual({ retry: false, reason: "window", deadline: at(60), from: "completed_at" });
    expect(windowEndedReason(HOUR, decision as { deadline: Date; from: "completed_at" })).toBe(
      "its retry window ended at 2026-11-20T11:00:04.000Z (60 min after the prediction's completed_at)",
    );
  });
});

describe("windowStart", () => {
  it.each<[string, unknown, Date, string]>([
    ["completed_at", body, received, completedAt],
    ["no completed_at: the arrival", { id: "p1" }, received, received.toISOString()],
    ["an unreadable completed_at: the arrival", { completed_at: "soon" }, received, received.toISOString()],
    [
      "completed_at after the arrival (a clock ahead): the arrival",
      body,
      new Date("2026-11-20T09:00:00Z"),
      "2026-11-20T09:00:00.000Z",
    ],
    ["not an object", null, received, received.toISOString()],
  ])("%s", (_name, value, receivedAt, expected) => {
    expect(windowStart(value, receivedAt).at.toISOString()).toBe(expected);
  });
});

describe("maxDeliveryAttempts", () => {
  it.each([
    ["an hour: 8 waits up to 10 min, 4 more, the last cut short to end on the hour", HOUR, 13],
    ["a day", 24 * HOUR, 151],
    ["a window shorter than the first wait still allows 3", 1_000, 3],
  ] as const)("%s", (_name, windowMs, expected) => {
    expect(maxDeliveryAttempts(BACKOFF.delivery, windowMs)).toBe(expected);
  });
});
