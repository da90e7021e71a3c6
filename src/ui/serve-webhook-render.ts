import type { ServerLogLevel } from "../webhook/http-server.ts";
import type { ServeWebhookResult } from "../webhook/receiver.ts";
import type { Output } from "./output.ts";

// What `genstore serve-webhook` shows: the webhook URL on stdout (for scripts: `--port 0`
// picks a free port), one timestamped line per delivery and event on stderr.

export function warnInsecure(output: Output): void {
  output.warn(
    "--insecure-no-verify: webhook signatures are NOT checked. Anyone who can reach this port can make genstore download files and write rows.",
  );
  output.warn("Use it only on a local machine for experiments; set REPLICATE_WEBHOOK_SECRET for anything else.");
}

/** The receiver's log: "12:00:01 200 msg_… abc → stored 2 objects", errors in red, warnings in yellow. */
export function serveWebhookLog(output: Output): (line: string, level: ServerLogLevel) => void {
  const time = () => new Date().toISOString().slice(11, 19);
  return (line, level) => {
    if (level === "debug") output.debug(`${time()} ${line}`);
    else if (level === "info") output.info(`${time()} ${line}`);
    else output.info(`${time()} ${level === "error" ? output.stderrColor.red(line) : output.stderrColor.yellow(line)}`);
  };
}

export function reportListening(
  output: Output,
  where: {
    webhookUrl: string;
    url: string;
    database: string;
    /** Undefined: the receiver has no worker (--no-worker). */
    storage: string | undefined;
    metricsToken?: { token: string; generated: boolean };
  },
): void {
  output.print(where.webhookUrl);
  output.success(
    `Ready. Receiving Replicate webhooks at ${where.webhookUrl} (health: ${where.url}/healthz; metrics: ${where.url}/metrics; ${where.database}; ${where.storage === undefined ? "no worker" : `storage ${where.storage}`}). Ctrl-C to stop.`,
  );
  if (where.storage === undefined)
    output.info(
      "Worker: off (--no-worker). Deliveries are stored and acked here, and wait in the database for `genstore worker` (or a serve-webhook with its worker) to ingest them.",
    );
  if (where.metricsToken?.generated)
    output.warn(
      `Listening beyond this machine: GET /metrics needs "Authorization: Bearer ${where.metricsToken.token}" (generated for this run; pass --metrics-token to choose one).`,
    );
}

/** Whether serve-webhook polls Replicate for stuck rows, and why not. */
export type PollingState = { on: true; every: string; after: string } | { on: false; why: string };

export function reportPolling(output: Output, polling: PollingState): void {
  output.info(
    polling.on
      ? `Polling Replicate every ${polling.every} for rows starting/processing untouched for ${polling.after} (as recover --pending; --no-reconcile turns it off).`
      : `Polling Replicate for stuck rows: off (${polling.why}); rows a webhook never finished wait for genstore recover --pending.`,
  );
}

export function renderStopped(result: ServeWebhookResult, output: Output, options: { worker: boolean }): void {
  const queued = result.pending === 1 ? "1 delivery still queued" : `${result.pending} deliveries still queued`;
  output.info(
    `Stopped.${result.pending > 0 ? ` ${queued}: ${options.worker ? "the next receiver or worker" : "genstore worker (or a receiver with its worker)"} on this database takes them.` : ""}`,
  );
}

/** `genstore worker`'s line once it runs. */
export function reportWorking(output: Output, where: { database: string; storage: string; concurrency: number }): void {
  output.success(
    `Ready. Ingesting the webhook deliveries queued in ${where.database} into storage ${where.storage} (${where.concurrency} downloads at a time). Ctrl-C to stop.`,
  );
}
