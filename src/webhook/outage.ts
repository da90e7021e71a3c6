// A storage outage ends for every delivery at once. The queue's backoff reaches 10 min, so
// after a long outage the deliveries it stranded would wait up to 10 min more each once
// storage is back. Instead: after an attempt fails on storage itself (unreachable, full,
// refusing writes), the receiver checks storage every few seconds, and as soon as a check
// or an attempt succeeds, every delivery waiting out a backoff is made due at once.
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
  let since: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let releasing = false;

  const end = async () => {
    if (since === undefined || releasing) return;
    releasing = true;
    try {
      const released = await options.queue.releaseWaiting();
      const lasted = Math.round((Date.now() - since) / 1000);
      since = undefined;
      clearTimeout(timer);
      options.log(
        `storage is back after ${lasted} s: ${released} deliver${released === 1 ? "y" : "ies"} waiting out a backoff retried now`,
        "info",
      );
      if (released > 0) options.wake();
    } catch {
      // The database failed: the next check or success tries again.
    } finally {
      releasing = false;
    }
  };

  const check = () => {
    timer = setTimeout(() => {
      if (stopped || since === undefined) return;
      options
        .probe()
        .then(end, () => undefined)
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
          void end();
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
