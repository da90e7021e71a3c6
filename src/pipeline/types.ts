// The contract between the ingestion pipeline (src/pipeline/ingest.ts) and its callers:
// the webhook worker, `recover` and the library export. Types only.
import type { Config } from "../config.ts";
import type { Prediction } from "../core/prediction.ts";
import type { Status } from "../core/status.ts";
import type { Database } from "../db/client.ts";
import type { Storage } from "../storage/types.ts";
import type { DownloadPolicy } from "./download.ts";

/** How a prediction reached the pipeline (recorded in metadata.arrivedVia). */
export type Arrival = "webhook" | "recover" | "poll";

export interface PipelineDeps {
  db: Database;
  storage: Storage;
  /** Download policy and limits: outputHosts, maxOutputBytes. */
  config: Pick<Config, "outputHosts" | "maxOutputBytes">;
  signal?: AbortSignal;
  /** Download tuning (retries, backoff, timeouts, name resolution); defaults suit production. */
  download?: Partial<Omit<DownloadPolicy, "allowedHosts" | "maxBytes">>;
}

export interface IngestRequest {
  prediction: Prediction;
  via: Arrival;
  /** The webhook URL's query string (userId, generationId): unsigned, so it only places a prediction that has no row. */
  query?: URLSearchParams | Record<string, string>;
  /** The operator's --user: the last resort for an orphan. */
  user?: string;
  /** Plan only: read the row, decide, touch nothing. */
  dryRun?: boolean;
  /**
   * Keys the row lists that storage no longer has (doctor --repair): planned as not stored,
   * so they are copied again from the prediction's outputs (never over an existing object).
   */
  missingKeys?: readonly string[];
}

export interface StoredObject {
  index: number;
  key: string;
  size: number;
  contentType: string | null;
  etag: string;
  kind: "output" | "thumbnail";
}

/** The ingestion pipeline (ingestPrediction) as its callers take it: the webhook worker, `recover`, the route handler. */
export type IngestFunction = (deps: PipelineDeps, request: IngestRequest) => Promise<IngestResult>;

export interface IngestResult {
  predictionId: string;
  generationId: string;
  userId: string;
  /** The row's status after this run. */
  status: Status;
  /** created: a new row; updated: the row changed; unchanged: nothing to do (duplicate or stale delivery). */
  outcome: "created" | "updated" | "unchanged";
  /** Objects written by this run. */
  stored: StoredObject[];
  /** Keys the row already had. */
  alreadyStored: string[];
  /** Outputs whose URL answered 404/410: the file is gone; the row is kept and marked. */
  expired: Array<{ index: number; url: string }>;
  warnings: string[];
  dryRun: boolean;
  /** dryRun only: the objects a real run would try to store. */
  planned?: Array<{ index: number; key: string; kind: "output" | "thumbnail"; url: string }>;
}
