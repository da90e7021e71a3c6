import { onTestFinished } from "vitest";
import type { Database } from "../../src/db/client.ts";
import { ingestPrediction } from "../../src/pipeline/ingest.ts";
import type { Storage } from "../../src/storage/types.ts";
import { createBatchIngestProcessor, createIngestProcessor } from "../../src/webhook/ingest-delivery.ts";
import { createDeliveryQueue } from "../../src/webhook/queue.ts";
import { createWebhookServer } from "../../src/webhook/http-server.ts";
import { createDeliveryWorker } from "../../src/webhook/worker.ts";
import { pipelineDeps } from "./pipeline-fixtures.ts";
import { waitFor } from "./wait.ts";

// A receiver on 127.0.0.1 wired to the real ingestion pipeline, closed when the test ends.

export async function startReceiver(
  db: Database,
  storage: Storage,
  outputHosts: string[],
  secret: string,
  options: { concurrency?: number } = {},
) {
  const queue = createDeliveryQueue(db);
  const lines: string[] = [];
  const deps = pipelineDeps(db, storage, outputHosts);
  const worker = createDeliveryWorker({
    queue,
    concurrency: options.concurrency ?? 4,
    pollIntervalMs: 100,
    // As serve-webhook runs it: non-final deliveries in batches, the rest through the pipeline.
    batch: createBatchIngestProcessor(deps),
    process: createIngestProcessor(ingestPrediction, deps),
    log: (line) => lines.push(line),
  });
  const server = createWebhookServer({
    queue,
    secret,
    onAccepted: () => worker.wake(),
    log: (line) => lines.push(line),
  });
  const base = await server.listen(0, "127.0.0.1");
  worker.start();
  onTestFinished(async () => {
    await server.close();
    await worker.stop();
  });
  return {
    url: `${base}/api/webhooks/replicate`,
    base,
    queue,
    lines,
    /** Resolves once every stored delivery is done or failed. */
    settled: (timeoutMs?: number) =>
      waitFor(
        async () => {
          const counts = await queue.counts();
          return counts.pending + counts.processing === 0;
        },
        timeoutMs,
        "the delivery queue to settle",
      ),
  };
}

export async function storedKeys(storage: Storage, prefix = ""): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of storage.list(prefix)) keys.push(object.key);
  return keys;
}
