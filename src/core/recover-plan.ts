// The rules of `genstore recover` that need no I/O: which ids are acceptable, which listed predictions fall in --since, which are orphans, what each
// item's state means, the summary line and the exit code.
import type { Prediction } from "./prediction.ts";
import type { Status } from "./status.ts";

/** Replicate prediction ids are lowercase letters and digits (26 today); we accept 1 to 64. */
const PREDICTION_ID = /^[a-z0-9]{1,64}$/;

/** Why id cannot be a Replicate prediction id, or undefined when it can. */
export function predictionIdProblem(id: string): string | undefined {
  if (id === "") return "is empty";
  if (id.length > 64) return "is longer than 64 characters";
  if (PREDICTION_ID.test(id)) return undefined;
  if (/[A-Z]/.test(id) && PREDICTION_ID.test(id.toLowerCase()))
    return "has capital letters (Replicate ids are lowercase)";
  return "may only contain lowercase letters and digits";
}

/**
 * One page of GET /v1/predictions (newest first) against --since: the predictions created at
 * or after `since`, and whether paging can stop (a prediction on this page is older). A
 * prediction without created_at is kept: it cannot be placed, and skipping it could lose it.
 */
export function predictionsSince<P extends Pick<Prediction, "created_at">>(
  page: P[],
  since: Date,
): { keep: P[]; done: boolean } {
  const keep: P[] = [];
  let done = false;
  for (const prediction of page) {
    const at = prediction.created_at ? Date.parse(prediction.created_at) : Number.NaN;
    if (!Number.isNaN(at) && at < since.getTime()) done = true;
    else keep.push(prediction);
  }
  return { keep, done };
}

/** Listed predictions split into the ones the database lacks (orphans) and the ones it has. */
export function splitOrphans<P extends { id: string }>(
  listed: P[],
  known: ReadonlySet<string>,
): { orphans: P[]; present: P[] } {
  const orphans: P[] = [];
  const present: P[] = [];
  for (const prediction of listed) (known.has(prediction.id) ? present : orphans).push(prediction);
  return { orphans, present };
}

/**
 * What became of one prediction:
 * - stored: the row was created or changed (objects written, status or error recorded);
 * - unchanged: row and objects were already right;
 * - pending: Replicate has not finished it; the row says so (poll again, or use --watch);
 * - planned: --dry-run, what would be done is in `plan`;
 * - expired: an output file is gone (404/410 an hour after completion); the row is kept and marked;
 * - unknown: Replicate has no prediction with this id (404);
 * - refused: nothing tells whose it is (orphan without userId) or the userId is unsafe;
 * - rate-limited: Replicate kept answering 429 after our retries;
 * - failed: anything else that went wrong with this one prediction;
 * - skipped: not attempted because the run stopped (bad token, unreachable, Ctrl-C).
 */
export const ITEM_STATES = [
  "stored",
  "unchanged",
  "pending",
  "planned",
  "expired",
  "unknown",
  "refused",
  "rate-limited",
  "failed",
  "skipped",
] as const;
export type ItemState = (typeof ITEM_STATES)[number];

const FAILED_STATES: readonly ItemState[] = ["expired", "unknown", "refused", "rate-limited", "failed"];

export function isFailedState(state: ItemState): boolean {
  return FAILED_STATES.includes(state);
}

export type RecoverCounts = Record<ItemState, number>;

export function countStates(items: ReadonlyArray<{ state: ItemState }>): RecoverCounts {
  const counts = Object.fromEntries(ITEM_STATES.map((s) => [s, 0])) as RecoverCounts;
  for (const item of items) counts[item.state] += 1;
  return counts;
}

/** Why the whole run stopped early, if it did. */
export type StopReason =
  { kind: "replicate" | "database" | "storage"; message: string; hint?: string } | { kind: "interrupted" };

/** The exit codes of recover (documented in --help and the README). */
export const RECOVER_EXIT = {
  ok: 0,
  replicate: 6,
  partial: 7,
  refused: 8,
  interrupted: 130,
  database: 4,
  storage: 5,
} as const;

/**
 * 130 when interrupted; the stopping error's code when Replicate (6), the database (4) or
 * storage (5) became unusable; 6 when some prediction stayed rate-limited (Replicate kept
 * throttling); 7 when some prediction failed otherwise (expired, unknown, refused, failed);
 * else 0. Pending predictions are not failures: they are not done yet.
 */
export function recoverExitCode(items: ReadonlyArray<{ state: ItemState }>, stopped?: StopReason): number {
  if (stopped?.kind === "interrupted") return RECOVER_EXIT.interrupted;
  if (stopped) return RECOVER_EXIT[stopped.kind];
  if (items.some((i) => i.state === "rate-limited")) return RECOVER_EXIT.replicate;
  if (items.some((i) => isFailedState(i.state))) return RECOVER_EXIT.partial;
  return RECOVER_EXIT.ok;
}

const LABELS: Record<ItemState, string> = {
  stored: "stored",
  unchanged: "already stored",
  pending: "still running",
  planned: "planned",
  expired: "expired",
  unknown: "unknown",
  refused: "refused",
  "rate-limited": "rate-limited",
  failed: "failed",
  skipped: "not attempted",
};

/** "4 predictions: 2 stored, 1 already stored, 1 unknown." (states with items only, in ITEM_STATES order) */
export function recoverSummaryLine(
  items: ReadonlyArray<{ state: ItemState }>,
  options: { dryRun?: boolean } = {},
): string {
  const counts = countStates(items);
  const parts = ITEM_STATES.filter((s) => counts[s] > 0).map((s) => `${counts[s]} ${LABELS[s]}`);
  const n = items.length;
  const head = `${options.dryRun ? "Dry run: " : ""}${n} prediction${n === 1 ? "" : "s"}`;
  if (n === 0) return `${head}: nothing to recover.`;
  return `${head}: ${parts.join(", ")}.${options.dryRun ? " Nothing was written." : ""}`;
}

/** A prediction's status is final when Replicate will not change it again. */
export function needsAnotherPoll(status: Status | undefined): boolean {
  return status === "starting" || status === "processing";
}
