// A storage outage ends for every delivery at once. The queue's backoff reaches 10 min, so
// after a long outage the deliveries it stranded would wait up to 10 min more each once
// storage is back. Instead: after an attempt fails on storage itself (unreachable, full,
// refusing writes), the receiver checks storage every few seconds. A check that passes lets
// one waiting delivery go at once (a check can pass while writes still fail: a full disk
// takes an empty file), and the first attempt that succeeds makes every delivery waiting
// out a backoff due at once.
import { isStorageOutage } from "../storage/errors.ts";
import type { DeliveryQueue } from "./queue.ts";
import type { DeliveryProcessor } from "./worker.ts";

/** How often storage is checked during an outage. */
export const DEFAULT_STORAGE_PROBE_MS = 15_000;

export interface OutageWatchOptions {
  queue: Pick<DeliveryQueue, "releaseWaiting">;
  /** Storage.check(): throws while storage is unusable. */
  probe: () => Promise<void>;
  /** How often probe runs during an outage (default 15 s). */
  everyMs?: number;
  /** Wakes the worker once deliveries were released. */
  wake: () => void;
  log: (line: string, level: "info" | "warn") => void;
}

export interface OutageWatch {
  /** The processor, watched: a storage outage starts the checks, a success ends the outage. */
  watch(process: DeliveryProcessor): DeliveryProcessor;
  stop(): void;
}

export function createOutageWatch(options: OutageWatchOptions): OutageWatch {
  const everyMs = options.everyMs ?? DEFAULT_STORAGE_PROBE_MS;
  /** When the outage began; undefined: no outage. */
  let since: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const release = async (limit?: number): Promise<number> => {
    try {
      const released = await options.queue.releaseWaiting(limit);
      if (released > 0) options.wake();
      return released;
    } catch {
      return -1; // The database failed: the next check or success tries again.
    }
  };

  const end = async () => {
    if (since === undefined) return;
    const began = since;
    since = undefined;
    clearTimeout(timer);
    const released = await release();
    if (released < 0) since ??= began;
    else
      options.log(
        `storage is back after ${Math.round((Date.now() - began) / 1000)} s: ${released} deliver${released === 1 ? "y" : "ies"} waiting out a backoff retried now`,
        "info",
      );
  };

  const check = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (stopped || since === undefined) return;
      options
        .probe()
        // The check passed: one waiting delivery tries now; its success ends the outage. Nothing waiting: it is over.
        .then(async () => ((await release(1)) === 0 ? end() : undefined))
        .catch(() => undefined)
        .finally(() => {
          if (!stopped && since !== undefined) check();
        });
    }, everyMs);
    timer.unref();
  };

  return {
    watch(process) {
      return async (delivery) => {
        try {
          const summary = await process(delivery);
          if (since !== undefined) void end();
          return summary;
        } catch (error) {
          if (isStorageOutage(error) && since === undefined && !stopped) {
            since = Date.now();
            check();
          }
          throw error;
        }
      };
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
