// Finishes deliveries that were received but not ingested (a download that failed after the
// 200, a server that stopped mid-way) where no `serve-webhook` runs: a route handler calls
// this after answering, and a cron route calls it on a schedule. It is the receiver's own
// worker, run until the due work is done, a number of deliveries is reached, or time is up.
import { ingestPrediction } from "../pipeline/ingest.ts";
import type { PipelineDeps } from "../pipeline/types.ts";
import type { IngestFunction } from "../pipeline/types.ts";
import { BACKOFF } from "../core/backoff.ts";
import { retryWindowMs } from "../config.ts";
import { createIngestProcessor, recordGivenUp } from "./ingest-delivery.ts";
import { createDeliveryQueue, type DeliveryQueue, type QueueCounts } from "./queue.ts";
import { createDeliveryWorker } from "./worker.ts";

export interface DrainOptions {
  /** Stop claiming after this many deliveries (default 10). */
  max?: number;
  /** Stop claiming after this long; the deliveries in progress still finish (default 20 s). */
  timeMs?: number;
  /** Deliveries ingested at once (default 2). */
  concurrency?: number;
  /** The userId for an orphan prediction that names none. */
  user?: string;
  /** Replaces the pipeline (tests). */
  ingest?: IngestFunction;
  /** How long after the prediction's completed_at a retryable failure is retried (default: GENSTORE_DELIVERY_RETRY_WINDOW, else 1 h). */
  retryWindowMs?: number;
  /** One line per delivery (default: none); level "warn" or "error" for a failed attempt. */
  log?: (line: string, level: "info" | "warn" | "error") => void;
}

export interface DrainResult {
  /** Deliveries ingested and marked done. */
  processed: number;
  /** Deliveries whose attempt failed (retried later with backoff, or failed for good). */
  failed: number;
  /** What is left in the queue (pending includes deliveries waiting out their backoff). */
  remaining: QueueCounts;
}

/**
 * Claims due deliveries from the queue (pending ones whose backoff is over, and those a
 * crashed worker held) and ingests them, as `serve-webhook`'s worker does.
 */
export async function drainDeliveries(
  deps: Pick<PipelineDeps, "db" | "storage" | "config">,
  options: DrainOptions = {},
): Promise<DrainResult> {
  const queue = createDeliveryQueue(deps.db, BACKOFF.delivery, {
    retryWindowMs: options.retryWindowMs ?? retryWindowMs({ name: "retryWindowMs", value: undefined }),
  });
  const max = Math.max(1, options.max ?? 10);
  const process = createIngestProcessor(options.ingest ?? ingestPrediction, deps, { user: options.user });
  let started = 0;
  let processed = 0;
  let failed = 0;
  let reachedMax: () => void = () => {};
  const maxReached = new Promise<void>((resolve) => (reachedMax = resolve));
  const worker = createDeliveryWorker({
    queue,
    concurrency: Math.min(options.concurrency ?? 2, max),
    log: (line, level) => options.log?.(line, level),
    onGivenUp: (delivery, givenUp) => recordGivenUp(deps.db, delivery, givenUp),
    process: async (delivery) => {
      started += 1;
      if (started >= max) reachedMax();
      try {
        const summary = await process(delivery);
        processed += 1;
        return summary;
      } catch (error) {
        failed += 1;
        throw error;
      }
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const timeUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, options.timeMs ?? 20_000)));
  worker.start();
  try {
    await Promise.race([worker.drained(), maxReached, timeUp]);
  } finally {
    clearTimeout(timer);
    await worker.stop();
  }
  return { processed, failed, remaining: await queue.counts() };
}

// One queue per database, so that concurrent requests share its group-committed enqueue
// (a queue per request would commit every delivery on its own).
const queues = new WeakMap<PipelineDeps["db"], DeliveryQueue>();
export function deliveryQueueFor(db: PipelineDeps["db"]): DeliveryQueue {
  let queue = queues.get(db);
  if (!queue) queues.set(db, (queue = createDeliveryQueue(db)));
  return queue;
}
