// Replicate's statuses and the one rule for moving between them: a final status is never
// replaced, and a non-final one only moves forward (starting → processing).

export const STATUSES = ["starting", "processing", "succeeded", "failed", "canceled", "aborted"] as const;
export type Status = (typeof STATUSES)[number];
export const FINAL_STATUSES: readonly Status[] = ["succeeded", "failed", "canceled", "aborted"];

export function isStatus(value: unknown): value is Status {
  return typeof value === "string" && (STATUSES as readonly string[]).includes(value);
}

export function isFinal(status: string | null | undefined): boolean {
  return (FINAL_STATUSES as readonly (string | null | undefined)[]).includes(status);
}

export type Transition =
  { apply: true; status: Status } | { apply: false; status: Status; reason: "same" | "stale" | "final-kept" };

/**
 * What the row's status becomes when an update with `incoming` arrives. Deliveries come
 * more than once and in any order, so: starting never overwrites processing, and a final
 * status stays, unless another final status comes with a later Replicate `completed_at`
 * (two final statuses for one prediction are then decided by Replicate's clock, never by
 * which delivery happened to arrive, or finish its downloads, first).
 */
export function nextStatus(
  current: Status | null | undefined,
  incoming: Status,
  completedAt: { current?: Date | null; incoming?: Date | null } = {},
): Transition {
  if (current === undefined || current === null) return { apply: true, status: incoming };
  if (current === incoming) return { apply: false, status: current, reason: "same" };
  if (isFinal(current)) {
    const later =
      isFinal(incoming) &&
      completedAt.current != null &&
      completedAt.incoming != null &&
      completedAt.incoming.getTime() > completedAt.current.getTime();
    return later ? { apply: true, status: incoming } : { apply: false, status: current, reason: "final-kept" };
  }
  if (isFinal(incoming)) return { apply: true, status: incoming };
  return incoming === "processing"
    ? { apply: true, status: incoming }
    : { apply: false, status: current, reason: "stale" };
}
