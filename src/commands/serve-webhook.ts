import { Option, type Command } from "commander";
import type { z as zod } from "zod";
import { withContext, type Context } from "../app.ts";
import { wholeNumber } from "./option-rules.ts";
import { RETRY_WINDOW_VARIABLE, retryWindowMs as retryWindowFor } from "../config.ts";
import { parseDuration } from "../core/dates.ts";
import { DEFAULT_RETRY_WINDOW } from "../core/delivery-retry.ts";
import { replicateClientFromConfig } from "../replicate/client.ts";
import { DEFAULT_RETENTION, RETENTION_VARIABLE, retentionMs as retentionFor } from "../jobs/prune.ts";
import { checkCanListen } from "../listen.ts";
import { ingestPrediction } from "../pipeline/ingest.ts";
import {
  renderStopped,
  reportListening,
  reportPolling,
  serveWebhookLog,
  warnInsecure,
  type PollingState,
} from "../ui/serve-webhook-render.ts";
import { checkServeWebhookInput, runServeWebhook } from "../webhook/receiver.ts";

// `serve-webhook`: receive Replicate webhooks on POST /api/webhooks/replicate, verify them,
// store each delivery durably before answering 200, and ingest it with a worker that claims
// from the database (so several receivers can share it, and a crash loses nothing). The
// work is in src/webhook/receiver.ts, what it shows in src/ui/serve-webhook-render.ts.

export function register(program: Command, signal: AbortSignal): void {
  const command = program
    .command("serve-webhook")
    .description("Receive Replicate webhooks: verify the signature, store the delivery durably, ingest it")
    .option("-p, --port <port>", "port to listen on (0: any free port)", "3000")
    .option("--host <host>", "address to listen on (0.0.0.0 for every interface)", "127.0.0.1")
    .option("--insecure-no-verify", "accept unsigned deliveries (local experiments only: anyone can post)")
    .option(
      "--metrics-token <token>",
      "require this bearer token on GET /metrics (generated and printed once when --host is not loopback)",
    )
    .option(
      "--no-worker",
      "only verify and store deliveries (acks); `genstore worker` on the same database ingests them",
    )
    .option(
      "--unhealthy-after <duration>",
      "GET /healthz answers 503 when deliveries are in progress and none finished for this long",
      "10m",
    );
  addWorkerOptions(command)
    .addHelpText(
      "after",
      `
Needs REPLICATE_WEBHOOK_SECRET (whsec_…, from GET https://api.replicate.com/v1/webhooks/default/secret).
Register the webhook as https://<your host>/api/webhooks/replicate?userId=<id>; GET /healthz answers
{"ok":true,"pending":…,"processing":…,"failed":…,"oldestPendingSeconds":…,"worker":{"ok":true,…}}, or 503
when the database fails or the worker makes no progress; GET /metrics in Prometheus' text format.
Deliveries are logged on stderr (non-final ones a line per batch); Ctrl-C stops accepting, finishes
what is in progress and exits 0. Work left by a stopped or crashed receiver is picked up by the next
one on the same database. With REPLICATE_API_TOKEN, rows stuck in starting/processing are polled
from Replicate (as recover --pending). With --no-worker the receiver only acks: run \`genstore worker\`
(PostgreSQL) to ingest, with the worker options below.

Examples:
  $ genstore serve-webhook
  $ genstore serve-webhook --port 8080 --host 0.0.0.0 --concurrency 8
  $ genstore serve-webhook --no-worker --host 0.0.0.0     (and genstore worker on another machine)
  $ genstore trigger --prompt "[VIDEO] a fox"      (in another terminal: send a signed sample)`,
    )
    .action(withContext(serveWebhookAction, signal));
}

async function serveWebhookAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) =>
    z.object({
      port: wholeNumber(z, 0, 65535),
      host: z.string().min(1),
      insecureNoVerify: z.boolean().optional(),
      metricsToken: z.string().min(16, "must be at least 16 characters").optional(),
      worker: z.boolean(),
      unhealthyAfter: z.string().refine((v) => (parseDuration(v) ?? 0) > 0, "must be a duration such as 10m or 90s"),
      ...workerOptionShape(z),
    }),
  );
  const output = context.output();
  const config = context.config();
  const secret = input.insecureNoVerify ? undefined : config.webhookSecret;
  checkServeWebhookInput({ ...input, secret });
  const work = workerInput(input, context);
  if (input.insecureNoVerify) warnInsecure(output);

  await checkCanListen(input.port, input.host);
  // Without the worker, storage is never touched: a receiver needs only the database.
  const [db, storage] = await Promise.all([context.database(), input.worker ? context.storage() : undefined]);
  const result = await runServeWebhook(
    {
      ...work.input,
      port: input.port,
      host: input.host,
      insecureNoVerify: input.insecureNoVerify,
      metricsToken: input.metricsToken,
      worker: input.worker,
      secret,
      stallMs: parseDuration(input.unhealthyAfter)!,
    },
    {
      db,
      storage,
      config,
      ingest: ingestPrediction,
      replicate: input.worker ? work.replicate : undefined,
      signal: context.signal,
      log: serveWebhookLog(output),
      onListening: (where) => {
        reportListening(output, {
          ...where,
          database: db.describe,
          storage: storage ? `${storage.provider} ${storage.bucket}` : undefined,
        });
        if (input.worker) reportPolling(output, work.polling);
      },
    },
  );
  renderStopped(result, output, { worker: input.worker });
}

/** The options serve-webhook's worker and `genstore worker` share. */
export function addWorkerOptions(command: Command): Command {
  return command
    .option("--concurrency <n>", "deliveries ingested at the same time", "4")
    .option("-u, --user <userId>", "userId for a prediction that has no row and names no user (query string, input)")
    .option(
      "--retention <duration>",
      `delete done deliveries older than this, hourly (env ${RETENTION_VARIABLE}, default ${DEFAULT_RETENTION}; failed ones are kept)`,
    )
    .option(
      "--retry-window <duration>",
      `retry a delivery whose failure may pass (storage, network) until this long after its prediction completed (env ${RETRY_WINDOW_VARIABLE}, default ${DEFAULT_RETRY_WINDOW})`,
    )
    .option("--reconcile-after <duration>", "poll Replicate for rows starting/processing untouched this long", "10m")
    .option("--reconcile-every <duration>", "how often to look for such rows", "1m")
    .option("--no-reconcile", "do not poll Replicate for stuck rows (polling needs REPLICATE_API_TOKEN anyway)")
    .addOption(
      new Option("--lease <seconds>", "how long a claimed delivery stays locked without renewal")
        .default("60")
        .hideHelp(),
    )
    .addOption(
      new Option("--poll <ms>", "how often the database is checked for work left by others").default("1000").hideHelp(),
    );
}

export function workerOptionShape(z: typeof zod) {
  return {
    concurrency: wholeNumber(z, 1, 64),
    user: z.string().min(1).optional(),
    retention: z.string().optional(),
    retryWindow: z.string().optional(),
    reconcile: z.boolean(),
    reconcileAfter: z.string().refine((v) => (parseDuration(v) ?? 0) > 0, "must be a duration such as 10m or 1h"),
    reconcileEvery: z.string().refine((v) => (parseDuration(v) ?? 0) > 0, "must be a duration such as 1m or 30s"),
    lease: z.coerce.number().positive("must be a number of seconds"),
    poll: z.coerce.number().int().positive("must be a number of milliseconds"),
  };
}

type WorkerOptions = zod.infer<zod.ZodObject<ReturnType<typeof workerOptionShape>>>;

/** The worker's input from its options, whether polling Replicate is on and why not, and the client it polls with. */
export function workerInput(options: WorkerOptions, context: Context) {
  const config = context.config();
  const input = {
    concurrency: options.concurrency,
    user: options.user,
    retentionMs: retentionFor({ name: "--retention", value: options.retention }),
    retryWindowMs: retryWindowFor({ name: "--retry-window", value: options.retryWindow }),
    leaseMs: options.lease * 1000,
    pollIntervalMs: options.poll,
  };
  // The second half of "webhook + polling": only with a token (recover --pending's code).
  const polling: PollingState = !options.reconcile
    ? { on: false, why: "--no-reconcile" }
    : !config.replicate.token
      ? { on: false, why: "REPLICATE_API_TOKEN is not set" }
      : { on: true, every: options.reconcileEvery, after: options.reconcileAfter };
  return {
    input: {
      ...input,
      stuckPoll: polling.on
        ? {
            untouchedForMs: parseDuration(options.reconcileAfter)!,
            everyMs: parseDuration(options.reconcileEvery)!,
          }
        : undefined,
    },
    polling,
    replicate: polling.on ? replicateClientFromConfig(config) : undefined,
  };
}
