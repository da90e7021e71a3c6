// `serve-webhook` without the CLI: the HTTP receiver, the worker and the queue's retention
// on one database, until the signal aborts; then stop accepting, finish what is in flight,
// and return. `genstore worker` is the same without the HTTP receiver.
import { randomBytes } from "node:crypto";
import { setTimeout as sleepFor } from "node:timers/promises";
import { isLoopbackHost } from "../core/loopback.ts";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import { ConfigError, DatabaseError, ExitCode, UserError } from "../errors.ts";
import { runPrune } from "../jobs/prune.ts";
import type { Storage } from "../storage/types.ts";
import type { IngestFunction } from "../pipeline/types.ts";
import { createBatchIngestProcessor, createIngestProcessor, recordGivenUp } from "./ingest-delivery.ts";
import type { BackoffPolicy } from "../core/backoff.ts";
import { unsafeSegmentReason } from "../core/ids.ts";
import { createReceiverMetrics, type IngestOutcome, type ReceiverMetrics } from "./metrics.ts";
import { createDeliveryQueue, type DeliveryQueue } from "./queue.ts";
import { WEBHOOK_PATH } from "./accept-delivery.ts";
import { createWebhookServer, type ServerLogLevel } from "./http-server.ts";
import { signWebhook } from "./verify.ts";
import { createDeliveryWorker, type DeliveryProcessor } from "./worker.ts";
import { createOutageWatch } from "./outage.ts";
import { pollStuckRows } from "./poller.ts";
import type { ReplicateApi } from "../replicate/client.ts";

/** Connections for enqueues: the group commit has one statement in flight at a time (queue.ts). */
const ENQUEUE_CONNECTIONS = 1;

export interface ServeWebhookInput {
  port: number;
  host: string;
  /** Deliveries ingested at the same time. */
  concurrency: number;
  /** The userId for an orphan prediction that carries none (query string or input). */
  user?: string;
  /** Required unless insecureNoVerify. */
  secret?: string;
  insecureNoVerify?: boolean;
  /** Claim lease (renewed while working); a crashed receiver's work is retried after it. */
  leaseMs?: number;
  pollIntervalMs?: number;
  /** /healthz says the worker is stuck when deliveries are in progress and none finished for this long (default 10 min). */
  stallMs?: number;
  /** How often storage is checked while it fails, to retry the deliveries it stranded as soon as it is back (default 15 s). */
  storageProbeMs?: number;
  /** Default BACKOFF.delivery. */
  retry?: BackoffPolicy;
  /** How long after the prediction's completed_at a retryable failure is retried (default 1 h). */
  retryWindowMs?: number;
  /** Done deliveries older than this are deleted (src/jobs/prune.ts); undefined keeps them all. */
  retentionMs?: number;
  /** How often retention runs (default hourly, and once at start). */
  retentionEveryMs?: number;
  /** Rows per retention statement and the pause between them (tests). */
  retentionBatch?: { batchSize?: number; pauseMs?: number };
  /** Required by GET /metrics; generated when host is not a loopback address and none is given. */
  metricsToken?: string;
  /** Poll Replicate for rows stuck in starting/processing (needs deps.replicate); undefined: no polling. */
  stuckPoll?: { untouchedForMs: number; everyMs: number };
  /**
   * false: acks only (--no-worker). Deliveries wait in the database for `genstore worker` or a
   * receiver with its worker; retention, polling and the temp sweep are theirs too.
   */
  worker?: boolean;
}

export interface ServeWebhookDeps {
  db: Database;
  /** Needed by the worker only (a receiver started with worker: false never opens it). */
  storage?: Storage;
  config: Pick<Config, "outputHosts" | "maxOutputBytes">;
  ingest: IngestFunction;
  signal: AbortSignal;
  log: (line: string, level: ServerLogLevel) => void;
  onListening?: (info: {
    url: string;
    webhookUrl: string;
    metricsToken?: { token: string; generated: boolean };
  }) => void;
  /** Replaces the pipeline (tests and benchmarks). */
  process?: DeliveryProcessor;
  /** The Replicate API, for polling stuck rows (absent: no REPLICATE_API_TOKEN, no polling). */
  replicate?: ReplicateApi;
}

export interface ServeWebhookResult {
  /** Deliveries still pending or processing at exit (done by the next receiver to start). */
  pending: number;
}

/** Refuses input that cannot run, before anything is opened: no secret, a bad secret, an unsafe --user. */
export function checkServeWebhookInput(input: Pick<ServeWebhookInput, "secret" | "insecureNoVerify" | "user">): void {
  if (!input.secret && !input.insecureNoVerify) {
    throw new ConfigError(
      "Missing configuration: REPLICATE_WEBHOOK_SECRET (serve-webhook verifies every delivery).",
      "Set it to your account's secret (GET https://api.replicate.com/v1/webhooks/default/secret), or pass --insecure-no-verify for a local experiment.",
    );
  }
  if (input.user !== undefined) {
    const reason = unsafeSegmentReason(input.user);
    if (reason)
      throw new UserError(`Refusing --user ${JSON.stringify(input.user)}: it ${reason}.`, {
        exitCode: ExitCode.refused,
      });
  }
  // A malformed secret fails here, once, rather than on every request.
  if (input.secret && !input.insecureNoVerify)
    signWebhook({ id: "check", timestamp: 0, body: "", secret: input.secret });
}

export async function runServeWebhook(input: ServeWebhookInput, deps: ServeWebhookDeps): Promise<ServeWebhookResult> {
  // Beyond loopback, /metrics needs a token, as the gallery does; one is made for the run when none is given.
  const generated = input.metricsToken === undefined && !isLoopbackHost(input.host);
  const metricsToken = generated ? randomBytes(24).toString("base64url") : input.metricsToken;
  // Enqueues (the acks) on connections of their own: a worker's batch never makes one wait for a connection.
  const queue = createDeliveryQueue(deps.db, input.retry, {
    retryWindowMs: input.retryWindowMs,
    enqueueDb: deps.db.separate(ENQUEUE_CONNECTIONS),
  });
  const metrics = createReceiverMetrics();
  const work =
    input.worker === false
      ? undefined
      : createIngestWork(input, { ...deps, storage: needStorage(deps) }, queue, metrics);
  const server = createWebhookServer({
    queue,
    secret: input.secret,
    insecureNoVerify: input.insecureNoVerify,
    onAccepted: work && (() => work.worker.wake()),
    workerHealth: work && (() => work.worker.health()),
    log: deps.log,
    metrics,
    metricsToken,
  });

  // Ready means ready: a receiver that acks deliveries it cannot store, or cannot queue, is worse than none.
  if (work) await work.storage.check();
  await checkQueue(queue);
  const url = await server.listen(input.port, input.host);
  work?.start();
  deps.onListening?.({
    url,
    webhookUrl: `${url}${WEBHOOK_PATH}`,
    ...(metricsToken !== undefined ? { metricsToken: { token: metricsToken, generated } } : {}),
  });

  await untilAborted(deps.signal);
  deps.log(
    work
      ? "shutting down: no new deliveries; finishing the ones in progress (Ctrl-C again to stop at once)"
      : "shutting down: no new deliveries",
    "info",
  );
  await server.close();
  await work?.stop();
  return { pending: await pendingCount(queue) };
}

/** `genstore worker`'s input: serve-webhook's without the HTTP server. */
export type DeliveryWorkerInput = Omit<
  ServeWebhookInput,
  "port" | "host" | "secret" | "insecureNoVerify" | "metricsToken" | "worker" | "stallMs"
>;

/**
 * `genstore worker`: serve-webhook's worker without its HTTP server, draining the deliveries
 * that receivers started with --no-worker (or any receiver) queued in the same database,
 * until the signal aborts; then it finishes what is in progress and returns.
 */
export async function runDeliveryWorker(
  input: DeliveryWorkerInput,
  deps: Omit<ServeWebhookDeps, "onListening" | "storage"> & { storage: Storage; onStarted?: () => void },
): Promise<ServeWebhookResult> {
  const queue = createDeliveryQueue(deps.db, input.retry, { retryWindowMs: input.retryWindowMs });
  const work = createIngestWork(input, deps, queue, createReceiverMetrics());
  await deps.storage.check();
  await checkQueue(queue);
  work.start();
  deps.onStarted?.();
  await untilAborted(deps.signal);
  deps.log("shutting down: finishing the deliveries in progress (Ctrl-C again to stop at once)", "info");
  await work.stop();
  return { pending: await pendingCount(queue) };
}

function needStorage(deps: ServeWebhookDeps): Storage {
  if (!deps.storage) throw new Error("serve-webhook with its worker needs storage");
  return deps.storage;
}

async function checkQueue(queue: DeliveryQueue): Promise<void> {
  await queue.counts().catch((error: unknown) => {
    throw new DatabaseError(
      `The database cannot hold webhook deliveries: ${oneLine(error)}.`,
      "Check DATABASE_URL and run `genstore db migrate`.",
      error,
    );
  });
}

async function pendingCount(queue: DeliveryQueue): Promise<number> {
  const counts = await queue.counts().catch(() => ({ pending: 0, processing: 0 }));
  return counts.pending + counts.processing;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/**
 * The ingesting half of a receiver: the worker that claims deliveries from the queue, the
 * storage outage watch, retention of done deliveries, polling for stuck rows and the sweep of
 * temp files. serve-webhook runs it beside its HTTP server (unless --no-worker), `genstore
 * worker` alone.
 */
function createIngestWork(
  input: DeliveryWorkerInput & Pick<ServeWebhookInput, "stallMs">,
  deps: Omit<ServeWebhookDeps, "onListening" | "storage"> & { storage: Storage },
  queue: DeliveryQueue,
  metrics: ReceiverMetrics,
) {
  const outage = createOutageWatch({
    queue,
    probe: () => deps.storage.check(),
    everyMs: input.storageProbeMs,
    wake: () => worker.wake(),
    log: deps.log,
  });
  const pipeline = { db: deps.db, storage: deps.storage, config: deps.config };
  const ingest: IngestFunction = async (pipelineDeps, request) => {
    const result = await deps.ingest(pipelineDeps, request);
    metrics.downloaded(result.stored.reduce((sum, o) => sum + (o.kind === "output" ? o.size : 0), 0));
    return result;
  };
  const worker = createDeliveryWorker({
    queue,
    // Non-final deliveries are written many at a time; a replaced pipeline (tests) sees every delivery.
    batch: deps.process ? undefined : createBatchIngestProcessor(pipeline, { user: input.user }),
    events: {
      single(outcome, seconds) {
        metrics.ingested(outcome === "done" ? "ingested" : outcome);
        metrics.observeIngest("single", seconds);
      },
      batch(result, _size, seconds) {
        metrics.observeIngest("batch", seconds);
        for (const [outcome, count] of Object.entries(result?.outcomes ?? {}))
          metrics.ingested(outcome as IngestOutcome, count);
      },
    },
    concurrency: input.concurrency,
    leaseMs: input.leaseMs,
    pollIntervalMs: input.pollIntervalMs,
    stallMs: input.stallMs,
    // In-flight work is not aborted on shutdown: it finishes (a second Ctrl-C exits at once).
    process: outage.watch(deps.process ?? createIngestProcessor(ingest, pipeline, { user: input.user })),
    log: deps.log,
    onGivenUp: (delivery, givenUp) => recordGivenUp(deps.db, delivery, givenUp),
  });
  const background = new AbortController();
  let running: Promise<unknown> | undefined;
  return {
    worker,
    storage: deps.storage,
    start() {
      worker.start();
      const retaining = keepRetention(input, deps, background.signal);
      const polling =
        input.stuckPoll && deps.replicate
          ? pollStuckRows(
              { ...input.stuckPoll, user: input.user },
              { replicate: deps.replicate, ingest, pipeline, log: deps.log, signal: background.signal },
            )
          : undefined;
      // In the background: a large storage folder takes a while to walk, and nothing waits for it.
      const sweeping = deps.storage.removeStaleTemps?.().then(
        (removed) => {
          if (removed > 0)
            deps.log(
              `storage: removed ${removed} temp file${removed === 1 ? "" : "s"} left by interrupted writes`,
              "info",
            );
        },
        (error: unknown) => deps.log(`storage: could not remove old temp files: ${oneLine(error)}`, "warn"),
      );
      running = Promise.all([retaining, polling, sweeping]);
    },
    async stop() {
      background.abort();
      outage.stop();
      await Promise.all([worker.stop(), running]);
    },
  };
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}

const RETENTION_EVERY_MS = 60 * 60_000;

/** Deletes old done deliveries now and then every retentionEveryMs, until the signal aborts; never throws. */
async function keepRetention(
  input: Pick<ServeWebhookInput, "retentionMs" | "retentionBatch" | "retentionEveryMs">,
  deps: Pick<ServeWebhookDeps, "db" | "log">,
  signal: AbortSignal,
): Promise<void> {
  if (input.retentionMs === undefined) return;
  while (!signal.aborted) {
    try {
      const result = await runPrune(
        { olderThanMs: input.retentionMs, ...input.retentionBatch },
        { db: deps.db, signal },
      );
      if (result.deleted > 0)
        deps.log(
          `retention: deleted ${result.deleted} done deliver${result.deleted === 1 ? "y" : "ies"} finished before ${result.before}`,
          "info",
        );
    } catch (error) {
      if (!signal.aborted)
        deps.log(
          `retention: could not delete old deliveries (${(error as Error).message}); trying again later`,
          "warn",
        );
    }
    await sleepFor(input.retentionEveryMs ?? RETENTION_EVERY_MS, undefined, { signal }).catch(() => undefined);
  }
}
