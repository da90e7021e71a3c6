// What serve-webhook counts, and GET /metrics in Prometheus' text format (version 0.0.4):
// counters and a histogram kept in memory by this process, and the queue's gauges read from
// the database at each scrape (so they cover every receiver sharing it).
import type { QueueHealth } from "./queue.ts";

/** Where the ingest duration histogram puts its bucket bounds (seconds). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export type IngestOutcome =
  // the batch of non-final deliveries
  | "created"
  | "updated"
  | "unchanged"
  | "superseded"
  // the pipeline, one delivery at a time
  | "ingested"
  | "retry"
  | "failed"
  | "lost";

export interface ReceiverMetrics {
  /** A POST to the webhook path (before anything is checked). */
  received(): void;
  /** The answer to a webhook POST: 200 (acked; duplicate or not), or a refusal by status code. */
  answered(status: number, duplicate?: boolean): void;
  /** Deliveries that ended an ingest step with this outcome. */
  ingested(outcome: IngestOutcome, count?: number): void;
  /** How long one ingest step took: a batch, or one delivery through the pipeline. */
  observeIngest(path: "batch" | "single", seconds: number): void;
  /** Output bytes downloaded into storage. */
  downloaded(bytes: number): void;
  /** The text of GET /metrics; `queue` is read at the scrape (undefined: the database did not answer). */
  render(queue: QueueHealth | undefined): string;
}

export function createReceiverMetrics(): ReceiverMetrics {
  let received = 0;
  const acked = new Map<string, number>();
  const rejected = new Map<string, number>();
  const outcomes = new Map<string, number>();
  let downloadBytes = 0;
  const histograms = new Map<string, { buckets: number[]; sum: number; count: number }>();
  const add = (map: Map<string, number>, key: string, n = 1) => map.set(key, (map.get(key) ?? 0) + n);

  return {
    received: () => {
      received += 1;
    },
    answered(status, duplicate) {
      if (status === 200) add(acked, duplicate ? "true" : "false");
      else add(rejected, String(status));
    },
    ingested(outcome, count = 1) {
      if (count > 0) add(outcomes, outcome, count);
    },
    observeIngest(path, seconds) {
      let h = histograms.get(path);
      if (!h) histograms.set(path, (h = { buckets: DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 }));
      DURATION_BUCKETS.forEach((bound, i) => {
        if (seconds <= bound) h.buckets[i]! += 1;
      });
      h.sum += seconds;
      h.count += 1;
    },
    downloaded(bytes) {
      downloadBytes += bytes;
    },
    render(queue) {
      const out: string[] = [];
      const metric = (name: string, type: string, help: string, samples: Array<[string, number]>) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
        for (const [labels, value] of samples) out.push(`${name}${labels} ${value}`);
      };
      const labelled = (label: string, map: Map<string, number>) =>
        [...map].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]): [string, number] => [`{${label}="${k}"}`, v]);
      metric("genstore_webhook_deliveries_received_total", "counter", "Webhook POSTs received.", [["", received]]);
      metric(
        "genstore_webhook_deliveries_acked_total",
        "counter",
        "Deliveries answered 200 once stored (duplicate: the webhook-id was stored before).",
        labelled("duplicate", acked),
      );
      metric(
        "genstore_webhook_deliveries_rejected_total",
        "counter",
        "Webhook POSTs refused, by HTTP status code.",
        labelled("code", rejected),
      );
      metric(
        "genstore_webhook_ingest_total",
        "counter",
        "Deliveries by ingest outcome: created, updated, unchanged, superseded (batches of non-final states); ingested, retry, failed, lost (the pipeline).",
        labelled("outcome", outcomes),
      );
      metric("genstore_webhook_download_bytes_total", "counter", "Output bytes downloaded into storage.", [
        ["", downloadBytes],
      ]);
      out.push(
        "# HELP genstore_webhook_ingest_duration_seconds How long an ingest step took: a batch of non-final deliveries, or one delivery through the pipeline.",
        "# TYPE genstore_webhook_ingest_duration_seconds histogram",
      );
      for (const [path, h] of [...histograms].sort(([a], [b]) => a.localeCompare(b))) {
        DURATION_BUCKETS.forEach((bound, i) =>
          out.push(`genstore_webhook_ingest_duration_seconds_bucket{path="${path}",le="${bound}"} ${h.buckets[i]}`),
        );
        out.push(
          `genstore_webhook_ingest_duration_seconds_bucket{path="${path}",le="+Inf"} ${h.count}`,
          `genstore_webhook_ingest_duration_seconds_sum{path="${path}"} ${h.sum}`,
          `genstore_webhook_ingest_duration_seconds_count{path="${path}"} ${h.count}`,
        );
      }
      metric("genstore_webhook_database_up", "gauge", "1 when the database answered this scrape.", [
        ["", queue ? 1 : 0],
      ]);
      if (queue) {
        metric(
          "genstore_webhook_queue_depth",
          "gauge",
          "Deliveries in the queue by state (every receiver on the database).",
          [
            ['{state="pending"}', queue.pending],
            ['{state="processing"}', queue.processing],
            ['{state="failed"}', queue.failed],
          ],
        );
        metric(
          "genstore_webhook_oldest_pending_age_seconds",
          "gauge",
          "Age of the oldest delivery not yet done (pending or processing); 0 when there is none.",
          [["", queue.oldestPendingSeconds ?? 0]],
        );
      }
      return `${out.join("\n")}\n`;
    },
  };
}
