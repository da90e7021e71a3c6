import { Option, type Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { unsafeSegmentReason } from "../core/ids.ts";
import { ConfigError, ExitCode, UserError } from "../errors.ts";
import { ingestPrediction } from "../pipeline/ingest.ts";
import { runServeWebhook } from "../webhook/receiver.ts";
import { signWebhook } from "../webhook/verify.ts";

// `serve-webhook`: receive Replicate webhooks on POST /api/webhooks/replicate, verify them,
// store each delivery durably before answering 200, and ingest it with a worker that claims
// from the database (so several receivers can share it, and a crash loses nothing).

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("serve-webhook")
    .description("Receive Replicate webhooks: verify the signature, store the delivery durably, ingest it")
    .option("-p, --port <port>", "port to listen on (0: any free port)", "3000")
    .option("--host <host>", "address to listen on (0.0.0.0 for every interface)", "127.0.0.1")
    .option("--concurrency <n>", "deliveries ingested at the same time", "4")
    .option("-u, --user <userId>", "userId for a prediction that has no row and names no user (query string, input)")
    .option("--insecure-no-verify", "accept unsigned deliveries (local experiments only: anyone can post)")
    .addOption(
      new Option("--lease <seconds>", "how long a claimed delivery stays locked without renewal")
        .default("60")
        .hideHelp(),
    )
    .addOption(
      new Option("--poll <ms>", "how often the database is checked for work left by others").default("1000").hideHelp(),
    )
    .addHelpText(
      "after",
      `
Needs REPLICATE_WEBHOOK_SECRET (whsec_…, from GET https://api.replicate.com/v1/webhooks/default/secret).
Register the webhook as https://<your host>/api/webhooks/replicate?userId=<id>; GET /healthz answers
{"ok":true,"pending":…,"processing":…,"failed":…}. Each delivery is logged on stderr; Ctrl-C stops
accepting, finishes what is in progress and exits 0. Work left by a stopped or crashed receiver is
picked up by the next one on the same database.

Examples:
  $ genstore serve-webhook
  $ genstore serve-webhook --port 8080 --host 0.0.0.0 --concurrency 8
  $ genstore trigger --prompt "[VIDEO] a fox"      (in another terminal: send a signed sample)`,
    )
    .action(withContext(serveWebhookAction, signal));
}

async function serveWebhookAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) =>
    z.object({
      port: z.coerce
        .number()
        .int()
        .min(0, "must be a port number (0-65535)")
        .max(65535, "must be a port number (0-65535)"),
      host: z.string().min(1),
      concurrency: z.coerce.number().int().min(1, "must be between 1 and 64").max(64, "must be between 1 and 64"),
      user: z.string().min(1).optional(),
      insecureNoVerify: z.boolean().optional(),
      lease: z.coerce.number().positive("must be a number of seconds"),
      poll: z.coerce.number().int().positive("must be a number of milliseconds"),
    }),
  );
  const output = context.output();
  const config = context.config();
  if (!config.webhookSecret && !input.insecureNoVerify) {
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
  const secret = input.insecureNoVerify ? undefined : config.webhookSecret;
  if (secret)
    signWebhook({ id: "check", timestamp: 0, body: "", secret }); // a bad secret fails here, not per request
  else {
    output.warn(
      "--insecure-no-verify: webhook signatures are NOT checked. Anyone who can reach this port can make genstore download files and write rows.",
    );
    output.warn("Use it only on a local machine for experiments; set REPLICATE_WEBHOOK_SECRET for anything else.");
  }

  const [db, storage] = await Promise.all([context.database(), context.storage()]);
  const time = () => new Date().toISOString().slice(11, 19);
  const result = await runServeWebhook(
    { ...input, secret, leaseMs: input.lease * 1000, pollIntervalMs: input.poll },
    {
      db,
      storage,
      config,
      ingest: ingestPrediction,
      signal: context.signal,
      log: (line, level) => {
        if (level === "debug") output.debug(`${time()} ${line}`);
        else if (level === "info") output.info(`${time()} ${line}`);
        else
          output.info(
            `${time()} ${level === "error" ? output.stderrColor.red(line) : output.stderrColor.yellow(line)}`,
          );
      },
      onListening: ({ url, webhookUrl }) => {
        output.print(webhookUrl);
        output.success(
          `Ready. Receiving Replicate webhooks at ${webhookUrl} (health: ${url}/healthz; ${db.describe}; storage ${storage.provider} ${storage.bucket}). Ctrl-C to stop.`,
        );
      },
    },
  );
  output.info(
    `Stopped.${result.pending > 0 ? ` ${result.pending} deliveries still queued: the next receiver on this database takes them.` : ""}`,
  );
}
