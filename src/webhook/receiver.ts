// `serve-webhook` without the CLI: the HTTP receiver and the worker on one database, until
// the signal aborts; then stop accepting, finish what is in flight, and return.
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import { ConfigError, DatabaseError } from "../errors.ts";
import type { Storage } from "../storage/types.ts";
import type { IngestFunction } from "../pipeline/types.ts";
import { createIngestProcessor } from "./ingest-delivery.ts";
import type { BackoffPolicy } from "../core/backoff.ts";
import { createDeliveryQueue } from "./queue.ts";
import { WEBHOOK_PATH } from "./accept-delivery.ts";
import { createWebhookServer, type ServerLogLevel } from "./http-server.ts";
import { createDeliveryWorker, type DeliveryProcessor } from "./worker.ts";

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
  /** Default BACKOFF.delivery. */
  retry?: BackoffPolicy;
}

export interface ServeWebhookDeps {
  db: Database;
  storage: Storage;
  config: Pick<Config, "outputHosts" | "maxOutputBytes">;
  ingest: IngestFunction;
  signal: AbortSignal;
  log: (line: string, level: ServerLogLevel) => void;
  onListening?: (info: { url: string; webhookUrl: string }) => void;
  /** Replaces the pipeline (tests and benchmarks). */
  process?: DeliveryProcessor;
}

export interface ServeWebhookResult {
  /** Deliveries still pending or processing at exit (done by the next receiver to start). */
  pending: number;
}

export async function runServeWebhook(input: ServeWebhookInput, deps: ServeWebhookDeps): Promise<ServeWebhookResult> {
  const queue = createDeliveryQueue(deps.db, input.retry);
  const worker = createDeliveryWorker({
    queue,
    concurrency: input.concurrency,
    leaseMs: input.leaseMs,
    pollIntervalMs: input.pollIntervalMs,
    // In-flight work is not aborted on shutdown: it finishes (a second Ctrl-C exits at once).
    process:
      deps.process ??
      createIngestProcessor(
        deps.ingest,
        { db: deps.db, storage: deps.storage, config: deps.config },
        { user: input.user },
      ),
    log: deps.log,
  });
  const server = createWebhookServer({
    queue,
    secret: input.secret,
    insecureNoVerify: input.insecureNoVerify,
    onAccepted: () => worker.wake(),
    log: deps.log,
  });

  // Ready means ready: a receiver that acks deliveries it cannot store, or cannot queue, is worse than none.
  await deps.storage.check();
  await queue.counts().catch((error: unknown) => {
    throw new DatabaseError(
      `The database cannot hold webhook deliveries: ${oneLine(error)}.`,
      "Check DATABASE_URL and run `genstore db migrate`.",
      error,
    );
  });
  const url = await server.listen(input.port, input.host).catch((error: unknown) => {
    throw listenError(error, input.port, input.host);
  });
  worker.start();
  deps.onListening?.({ url, webhookUrl: `${url}${WEBHOOK_PATH}` });
  // In the background: a large storage folder takes a while to walk, and nothing waits for it.
  const sweeping = deps.storage.removeStaleTemps?.().then(
    (removed) => {
      if (removed > 0)
        deps.log(`storage: removed ${removed} temp file${removed === 1 ? "" : "s"} left by interrupted writes`, "info");
    },
    (error: unknown) => deps.log(`storage: could not remove old temp files: ${oneLine(error)}`, "warn"),
  );

  await new Promise<void>((resolve) => {
    if (deps.signal.aborted) return resolve();
    deps.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  deps.log("shutting down: no new deliveries; finishing the ones in progress (Ctrl-C again to stop at once)", "info");
  await server.close();
  await worker.stop();
  await sweeping;
  const counts = await queue.counts().catch(() => ({ pending: 0, processing: 0 }));
  return { pending: counts.pending + counts.processing };
}

/** A server that cannot listen is the operator's to fix (--port, --host), not a bug. */
function listenError(error: unknown, port: number, host: string): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const where = `${host}:${port}`;
  if (code === "EADDRINUSE")
    return new ConfigError(
      `Cannot listen on ${where}: the port is in use.`,
      "Stop what uses it, or pass another --port (0 picks a free one).",
    );
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME")
    return new ConfigError(
      `Cannot listen on ${where}: the host ${host} does not resolve.`,
      "Pass --host an address of this machine, such as 127.0.0.1 or 0.0.0.0.",
    );
  if (code === "EADDRNOTAVAIL")
    return new ConfigError(
      `Cannot listen on ${where}: that address is not one of this machine's.`,
      "Pass --host an address of this machine, such as 127.0.0.1 or 0.0.0.0.",
    );
  if (code === "EACCES" || code === "EPERM")
    return new ConfigError(
      `Cannot listen on ${where}: permission denied.`,
      "Ports below 1024 need privileges: pass a --port above 1023.",
    );
  return error as Error;
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}
