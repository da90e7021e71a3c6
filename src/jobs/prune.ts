import { setTimeout as sleepFor } from "node:timers/promises";
import type { Database } from "../db/client.ts";
import { durationSetting } from "../config.ts";
import { Interrupted, UserError } from "../errors.ts";
import { createDeliveryQueue } from "../webhook/queue.ts";

// Retention of the webhook delivery queue: done deliveries (each up to 10 MiB of body)
// older than the retention are deleted in small batches, with a pause between, so that a
// table with millions of them never holds long locks or starves the receivers. Failed
// deliveries are kept until an operator acts. Run on demand by `genstore db prune` and
// periodically by every `serve-webhook`.

/** How long done deliveries are kept when nothing says otherwise. */
export const DEFAULT_RETENTION = "7d";
/** The environment variable that sets it (serve-webhook's --retention and db prune's --older-than override it). */
export const RETENTION_VARIABLE = "GENSTORE_DELIVERY_RETENTION";
export const DEFAULT_BATCH_SIZE = 500;
export const DEFAULT_PAUSE_MS = 200;

export interface PruneInput {
  /** Done deliveries that finished longer ago than this are deleted. */
  olderThanMs: number;
  /** Count what would be deleted; delete nothing. */
  dryRun?: boolean;
  /** Rows per DELETE statement (default 500). */
  batchSize?: number;
  /** Pause between statements (default 200 ms). */
  pauseMs?: number;
}

export interface PruneDeps {
  db: Pick<Database, "query">;
  /** Stops between batches (Ctrl-C, a receiver shutting down). */
  signal?: AbortSignal;
  onProgress?: (progress: { deleted: number; batches: number }) => void;
}

export interface PruneResult {
  dryRun: boolean;
  olderThanMs: number;
  /** The cut-off: done deliveries that finished before this moment (UTC, ISO 8601). */
  before: string;
  /** Done deliveries older than the cut-off when the run started. */
  matched: number;
  /** Deleted by this run (0 with dryRun). */
  deleted: number;
  batches: number;
  /** Failed deliveries, never deleted. */
  failedKept: number;
  durationMs: number;
}

export async function runPrune(input: PruneInput, deps: PruneDeps): Promise<PruneResult> {
  const startedAt = Date.now();
  const batchSize = input.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new UserError(`Invalid batch size: ${batchSize}.`, { hint: "Use a whole number of at least 1." });
  const queue = createDeliveryQueue(deps.db);
  const before = await queue.retentionCutoff(input.olderThanMs);
  const [matched, counts] = await Promise.all([queue.countDone(before), queue.counts()]);
  let deleted = 0;
  let batches = 0;
  if (input.dryRun !== true) {
    for (;;) {
      const n = await queue.deleteDone(before, batchSize);
      deleted += n;
      if (n > 0) batches++;
      if (n > 0) deps.onProgress?.({ deleted, batches });
      if (n < batchSize) break;
      if (deps.signal?.aborted) break;
      await sleepFor(input.pauseMs ?? DEFAULT_PAUSE_MS, undefined, { signal: deps.signal }).catch(() => undefined);
      if (deps.signal?.aborted) break;
    }
    if (deps.signal?.aborted) {
      throw new Interrupted(
        `Interrupted after deleting ${deleted.toLocaleString("en-US")} done deliveries.`,
        "Run the same command again to delete the rest.",
      );
    }
  }
  return {
    dryRun: input.dryRun === true,
    olderThanMs: input.olderThanMs,
    before: `${before}Z`,
    matched,
    deleted,
    batches,
    failedKept: counts.failed,
    durationMs: Date.now() - startedAt,
  };
}

/**
 * The retention in milliseconds: the flag when given, else GENSTORE_DELIVERY_RETENTION,
 * else 7 days. A value that is not a duration is refused, naming where it came from.
 */
export function retentionMs(flag: { name: string; value: string | undefined }, env = process.env): number {
  return durationSetting(
    {
      flag,
      variable: RETENTION_VARIABLE,
      fallback: DEFAULT_RETENTION,
      examples: "7d, 36h or 2w",
      fallbackMeans: "keeps 7 days",
    },
    env,
  );
}
