// When a webhook delivery whose attempt failed is tried again, and when it is given up. Pure:
// the queue applies the decision.
//
// Replicate deletes a prediction's outputs about an hour after it completed, so a failure
// that a retry can fix (storage full or unreachable, the database, a 5xx from the output's
// host) is retried for as long as the output can still exist: until the retry window, counted
// from the prediction's completed_at (from the delivery's body; when it has none, from when
// the delivery arrived), has passed, however many attempts that takes. The waits follow
// BACKOFF.delivery (5 s doubling to 10 min); the last one is cut short so that the last
// attempt falls on the window's end. A failure that no retry can fix fails at once.

import { backoffDelay, type BackoffPolicy } from "./backoff.ts";

/** The retry window when nothing says otherwise: Replicate keeps outputs about an hour. */
export const DEFAULT_RETRY_WINDOW = "1h";
export const DEFAULT_RETRY_WINDOW_MS = 60 * 60_000;
/** Attempts a delivery gets even when its window has passed (a late delivery, a short window). */
export const MIN_DELIVERY_ATTEMPTS = 3;

export interface DeliveryFailure {
  /** The attempt that failed (1 for the first). */
  attempt: number;
  /** No later attempt can succeed (an expired or refused output, a body that can never be stored). */
  permanent: boolean;
  /** The delivery's body: its completed_at starts the window. */
  body: unknown;
  receivedAt: Date;
  now: Date;
}

export type DeliveryRetryDecision =
  | { retry: true; delayMs: number; deadline: Date }
  | { retry: false; reason: "permanent" }
  | { retry: false; reason: "window"; deadline: Date; from: "completed_at" | "received" };

export function decideDeliveryRetry(
  policy: BackoffPolicy,
  windowMs: number,
  failure: DeliveryFailure,
): DeliveryRetryDecision {
  if (failure.permanent) return { retry: false, reason: "permanent" };
  const start = windowStart(failure.body, failure.receivedAt);
  const deadline = new Date(start.at.getTime() + windowMs);
  const left = deadline.getTime() - failure.now.getTime();
  const delayMs = backoffDelay(policy, failure.attempt, { random: 0 });
  if (failure.attempt < MIN_DELIVERY_ATTEMPTS) return { retry: true, delayMs, deadline };
  if (left <= 0) return { retry: false, reason: "window", deadline, from: start.from };
  return { retry: true, delayMs: Math.min(delayMs, left), deadline };
}

/**
 * Where a delivery's retry window starts: the prediction's completed_at, else its arrival
 * (also when completed_at is later than the arrival: a clock ahead never lengthens the window).
 */
export function windowStart(body: unknown, receivedAt: Date): { at: Date; from: "completed_at" | "received" } {
  const completedAt = (body as { completed_at?: unknown } | null)?.completed_at;
  if (typeof completedAt === "string") {
    const at = new Date(completedAt);
    if (!Number.isNaN(at.getTime()) && at.getTime() <= receivedAt.getTime()) return { at, from: "completed_at" };
  }
  return { at: receivedAt, from: "received" };
}

/**
 * The most attempts any delivery can make within the window (the longest window starts when
 * it arrives): a delivery that reached it while its lease ran out (its worker died during
 * every one of them, a body that crashes the receiver) is failed rather than retried.
 */
export function maxDeliveryAttempts(policy: BackoffPolicy, windowMs: number): number {
  let attempts = 1;
  let elapsed = 0;
  while (attempts < 10_000) {
    const delay = backoffDelay(policy, attempts, { random: 0 });
    attempts += 1;
    if (elapsed + delay >= windowMs) break;
    elapsed += delay;
  }
  return Math.max(attempts, MIN_DELIVERY_ATTEMPTS);
}

/** "its retry window ended at 2026-11-20T11:00:04.000Z (60 min after the prediction's completed_at)". */
export function windowEndedReason(
  windowMs: number,
  decision: { deadline: Date; from: "completed_at" | "received" },
): string {
  const span = windowMs >= 120_000 ? `${Math.round(windowMs / 60_000)} min` : `${Math.round(windowMs / 1000)} s`;
  const from = decision.from === "completed_at" ? "the prediction's completed_at" : "the delivery arrived";
  return `its retry window ended at ${decision.deadline.toISOString()} (${span} after ${from})`;
}
