import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { ingestPrediction } from "../pipeline/ingest.ts";
import { renderStopped, reportPolling, reportWorking, serveWebhookLog } from "../ui/serve-webhook-render.ts";
import { runDeliveryWorker } from "../webhook/receiver.ts";
import { addWorkerOptions, workerInput, workerOptionShape } from "./serve-webhook.ts";

// `worker`: serve-webhook's worker without its HTTP receiver. It ingests the deliveries that
// receivers (`serve-webhook --no-worker`, or any) stored in the same database, so acking and
// ingesting can run in separate processes or on separate machines.

export function register(program: Command, signal: AbortSignal): void {
  const command = program
    .command("worker")
    .description("Ingest the webhook deliveries receivers stored in the database (for serve-webhook --no-worker)");
  addWorkerOptions(command)
    .addHelpText(
      "after",
      `
Claims the deliveries queued in the WebhookDelivery table, as serve-webhook's own worker does, and runs
them through the same pipeline; several workers and receivers can share one PostgreSQL database. It
also deletes old done deliveries (--retention) and, with REPLICATE_API_TOKEN, polls Replicate for
stuck rows. Logs on stderr; Ctrl-C finishes what is in progress and exits 0.

Examples:
  $ genstore worker
  $ genstore worker --concurrency 8 --database-url postgresql://…`,
    )
    .action(withContext(workerAction, signal));
}

async function workerAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) => z.object(workerOptionShape(z)));
  const output = context.output();
  const work = workerInput(input, context);
  const [db, storage] = await Promise.all([context.database(), context.storage()]);
  const result = await runDeliveryWorker(work.input, {
    db,
    storage,
    config: context.config(),
    ingest: ingestPrediction,
    replicate: work.replicate,
    signal: context.signal,
    log: serveWebhookLog(output),
    onStarted: () => {
      reportWorking(output, {
        database: db.describe,
        storage: `${storage.provider} ${storage.bucket}`,
        concurrency: input.concurrency,
      });
      reportPolling(output, work.polling);
    },
  });
  renderStopped(result, output, { worker: true });
}
