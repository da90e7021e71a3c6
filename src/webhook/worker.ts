// The worker that drains the delivery queue: it claims due deliveries from the database
// (woken at once after an enqueue, and polling for work left by other receivers or by a
// crashed process), runs each through a processor (the ingestion pipeline) with a lease it
// keeps renewing, and marks it done, or failed for a later retry.
//
// With a batch processor (serve-webhook), it claims up to `batchSize` deliveries a round
// trip and hands them to it first: non-final ones are written together in one transaction,
// and only the rest (final states, with their downloads) go to the one-at-a-time processor,
// `concurrency` at a time. While those are all busy, the next claims take only non-final
// deliveries, so a slow download never holds up the cheap ones, and a receiver never hoards
// more downloads than it can start soon (other receivers on the database take them).
import pLimit from "p-limit";
import type { DeliveryBatchProcessor } from "./ingest-delivery.ts";
import { searchParamsFrom, type ClaimedDelivery, type DeliveryQueue } from "./queue.ts";

/** Processes one delivery; returns a short summary for the log line ("succeeded → stored 2 objects"). */
export type DeliveryProcessor = (delivery: ClaimedDelivery & { params: URLSearchParams }) => Promise<string>;

export type WorkerLogLevel = "info" | "warn" | "error";

/** What the worker reports as it goes (metrics). */
export interface WorkerEvents {
  /** A delivery of the one-at-a-time processor finished: done, retry, failed or lost; and how long it took. */
  single?(outcome: "done" | "retry" | "failed" | "lost", seconds: number): void;
  /** A batch finished (or failed: then every delivery goes one at a time). */
  batch?(result: Awaited<ReturnType<DeliveryBatchProcessor>> | undefined, size: number, seconds: number): void;
}

export interface DeliveryWorkerOptions {
  queue: DeliveryQueue;
  process: DeliveryProcessor;
  /** Writes many deliveries at once (see above); without it, every delivery goes through process. */
  batch?: DeliveryBatchProcessor;
  /** Deliveries claimed a round trip when batching (default 256). */
  batchSize?: number;
  /** After a batch that was not full, how long the next one gathers before it is claimed (default 50 ms). */
  batchLingerMs?: number;
  /** Deliveries processed one at a time, at the same time (default 4). */
  concurrency?: number;
  /** How often the queue is polled when nothing woke the worker (default 1 s). */
  pollIntervalMs?: number;
  /** How long a claim lasts without renewal; renewed every third of it (default 60 s). */
  leaseMs?: number;
  log?: (line: string, level: WorkerLogLevel) => void;
  events?: WorkerEvents;
  /** With deliveries in progress, no attempt ending for this long makes health() unhealthy (default 10 min). */
  stallMs?: number;
  /** Called when a retryable failure is given up (its retry window passed): records why on the row. */
  onGivenUp?: (delivery: ClaimedDelivery, givenUp: { reason: string; error: string }) => Promise<unknown>;
}

export interface DeliveryWorker {
  start(): void;
  /** Claims now instead of at the next poll (called after an enqueue). */
  wake(): void;
  /** Stops claiming and waits for the deliveries in progress to finish. */
  stop(): Promise<void>;
  /** Resolves once nothing is in progress and a claim found nothing (for tests and benchmarks). */
  drained(): Promise<void>;
  /** Whether the worker makes progress (GET /healthz). */
  health(): WorkerHealth;
}

/** Batches written at once: one in its transaction while the next is claimed and folded. */
const BATCHES_IN_FLIGHT = 2;

/** The statuses a batch writes without downloading: what the worker claims while its downloads are busy. */
const NON_FINAL = ["starting", "processing"] as const;

export interface WorkerHealth {
  ok: boolean;
  /** Deliveries being processed now. */
  inProgress: number;
  /** When an attempt last ended (or the worker last became busy). */
  lastProgressAt: string;
  /** Why it is unhealthy: "4 deliveries in progress, none finished for 612 s". */
  reason?: string;
}

export const DEFAULT_STALL_MS = 10 * 60_000;

export function createDeliveryWorker(options: DeliveryWorkerOptions): DeliveryWorker {
  const { queue } = options;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const leaseMs = options.leaseMs ?? 60_000;
  const log = options.log ?? (() => {});
  const batchSize = Math.max(1, options.batchSize ?? 256);
  const batchLingerMs = options.batchLingerMs ?? 50;
  const limit = pLimit(concurrency);
  /** One-at-a-time deliveries held (running or waiting for a slot) before claims take non-final ones only. */
  const holdAtMost = concurrency * 2;

  let running = false;
  let loopDone: Promise<void> = Promise.resolve();
  const inFlight = new Set<Promise<void>>();
  const batches = new Set<Promise<void>>();
  let woken = false;
  let wakeUp: (() => void) | undefined;
  const idleWaiters: (() => void)[] = [];
  let lastDatabaseError = 0;
  const stallMs = options.stallMs ?? DEFAULT_STALL_MS;
  // Progress: an attempt ended, or the worker became busy; the loop's turns show it is alive.
  let lastProgress = Date.now();
  let lastTurn = Date.now();

  const wake = () => {
    woken = true;
    wakeUp?.();
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (woken) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });

  async function loop(): Promise<void> {
    let lastSweep = 0;
    while (running) {
      woken = false;
      lastTurn = Date.now();
      if (batches.size >= BATCHES_IN_FLIGHT) {
        await Promise.race(batches);
        continue;
      }
      const want = options.batch ? batchSize : concurrency - inFlight.size;
      let claimed: ClaimedDelivery[] = [];
      if (want > 0) {
        try {
          if (Date.now() - lastSweep >= pollIntervalMs) {
            lastSweep = Date.now();
            const abandoned = await queue.failAbandoned();
            if (abandoned > 0)
              log(
                `${abandoned} deliver${abandoned === 1 ? "y" : "ies"} marked failed: the worker stopped during every attempt`,
                "error",
              );
          }
          const busy = options.batch !== undefined && inFlight.size >= holdAtMost;
          claimed = await queue.claim(want, leaseMs, busy ? { statuses: NON_FINAL } : undefined);
        } catch (error) {
          // The database is down: say so once a minute, keep polling.
          if (Date.now() - lastDatabaseError > 60_000)
            log(`cannot claim deliveries: ${message(error)}; retrying`, "error");
          lastDatabaseError = Date.now();
        }
      }
      if (claimed.length > 0 && options.batch) {
        // The next claim goes out while this batch is written: two batches of the same
        // prediction take turns on its lock, the later one seeing what the first wrote.
        const batch = runBatch(options.batch, claimed).then((single) => single.forEach(schedule));
        batches.add(batch);
        void batch.finally(() => {
          batches.delete(batch);
          wake();
        });
      } else {
        for (const delivery of claimed) schedule(delivery);
      }
      if (claimed.length === 0 && inFlight.size === 0 && batches.size === 0) {
        for (const resolve of idleWaiters.splice(0)) resolve();
      }
      // A full claim may have left more due work; otherwise wait for a wake-up or the next poll.
      if (claimed.length > 0 && claimed.length === want) continue;
      if (options.batch && claimed.length > 0) {
        // Under load, a moment lets the next batch gather: each costs a transaction and a
        // commit whatever its size, and every one the worker saves leaves the database and
        // this process more time for acks. Wake-ups (every enqueue) do not cut it short.
        await new Promise((resolve) => setTimeout(resolve, batchLingerMs));
        continue;
      }
      await sleep(pollIntervalMs);
    }
  }

  /** The batch step; what it hands back (or everything, when it fails) goes one at a time. */
  async function runBatch(batch: DeliveryBatchProcessor, claimed: ClaimedDelivery[]): Promise<ClaimedDelivery[]> {
    const started = Date.now();
    try {
      const result = await batch(claimed);
      options.events?.batch?.(result, claimed.length, (Date.now() - started) / 1000);
      if (result.single.length < claimed.length) log(`200 ${result.line}`, "info");
      return result.single;
    } catch (error) {
      options.events?.batch?.(undefined, claimed.length, (Date.now() - started) / 1000);
      log(
        `batch of ${claimed.length} deliveries could not be written (${message(error)}); trying them one at a time`,
        "warn",
      );
      return claimed;
    }
  }

  /** Runs a delivery when a slot is free; its lease is renewed from now on, while it waits too. */
  function schedule(delivery: ClaimedDelivery): void {
    const renewal = setInterval(
      () => {
        queue.renew(delivery, leaseMs).catch(() => {});
      },
      Math.max(leaseMs / 3, 50),
    );
    renewal.unref();
    track(limit(() => runOne(delivery)).finally(() => clearInterval(renewal)));
  }

  function track(promise: Promise<void>): void {
    if (inFlight.size === 0) lastProgress = Date.now();
    inFlight.add(promise);
    void promise.finally(() => {
      lastProgress = Date.now();
      inFlight.delete(promise);
      wake();
    });
  }

  async function runOne(delivery: ClaimedDelivery): Promise<void> {
    const started = Date.now();
    const seconds = () => (Date.now() - started) / 1000;
    const who = `${delivery.id} ${delivery.predictionId}`;
    try {
      let summary: string;
      try {
        summary = await options.process({ ...delivery, params: searchParamsFrom(delivery.query) });
      } catch (error) {
        // The pipeline's errors say whether a later attempt can succeed (an expired or refused output cannot).
        const final = (error as { retryable?: unknown } | null)?.retryable === false;
        const outcome = await queue.fail(delivery, message(error), { final });
        options.events?.single?.(outcome.state, seconds());
        if (outcome.state === "retry") {
          const seconds = Math.round((outcome.retryAt!.getTime() - Date.now()) / 1000);
          log(`200 ${who} → attempt ${delivery.attempt} failed, retrying in ${seconds}s: ${message(error)}`, "warn");
        } else if (outcome.state === "failed") {
          const after = final ? "not retried" : `after ${delivery.attempt} attempts, ${outcome.reason ?? "given up"}`;
          log(`200 ${who} → failed (${after}): ${message(error)}`, "error");
          if (outcome.reason !== undefined)
            await options
              .onGivenUp?.(delivery, { reason: outcome.reason, error: message(error) })
              ?.catch((why: unknown) =>
                log(`200 ${who} → could not record on its row why it was given up: ${message(why)}`, "warn"),
              );
        } else {
          log(
            `200 ${who} → attempt ${delivery.attempt} failed after its lease ran out (another worker has it): ${message(error)}`,
            "warn",
          );
        }
        return;
      }
      const completed = await queue.complete(delivery);
      options.events?.single?.(completed ? "done" : "lost", seconds());
      const took = `${seconds().toFixed(1)}s`;
      log(
        `200 ${who} ${summary} (${took}${completed ? "" : "; its lease ran out meanwhile, another worker may repeat it"})`,
        "info",
      );
    } catch (error) {
      // The database failed while recording the outcome: the lease runs out and the work is retried.
      log(`200 ${who} → could not record the outcome: ${message(error)}; it will be retried`, "error");
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      loopDone = loop();
    },
    wake,
    async stop() {
      running = false;
      wake();
      await loopDone;
      await Promise.allSettled([...batches]);
      await Promise.allSettled([...inFlight]);
    },
    health() {
      const now = Date.now();
      const since = (t: number) => Math.round((now - t) / 1000);
      const base = { inProgress: inFlight.size, lastProgressAt: new Date(lastProgress).toISOString() };
      if (inFlight.size > 0 && now - lastProgress > stallMs)
        return {
          ok: false,
          ...base,
          reason: `${inFlight.size} deliver${inFlight.size === 1 ? "y" : "ies"} in progress, none finished for ${since(lastProgress)} s`,
        };
      // The loop waits at most pollIntervalMs between turns, unless a database call hangs.
      if (running && now - lastTurn > stallMs + pollIntervalMs)
        return { ok: false, ...base, reason: `the worker has not looked for work for ${since(lastTurn)} s` };
      return { ok: true, ...base };
    },
    drained() {
      return new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        wake();
      });
    },
  };
}

function message(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s+/g, " ").trim();
}
