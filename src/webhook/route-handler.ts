// The library's web-standard webhook handler (a Next.js route handler, or anything that
// speaks Request/Response): the same checks and durable queue as `serve-webhook`, then the
// delivery is ingested right away, after the answer when the host can keep working
// (Next.js `after`, Vercel `waitUntil`), else before it.
import { loadConfig, type Config, type Env } from "../config.ts";
import { openDatabase, type Database } from "../db/client.ts";
import { ensureMigrated } from "../db/migrations.ts";
import { ingestPrediction } from "../pipeline/ingest.ts";
import { createStorage } from "../storage/index.ts";
import type { Storage } from "../storage/types.ts";
import { createIngestProcessor, type IngestFunction } from "./ingest-delivery.ts";
import { createDeliveryQueue, searchParamsFrom, type DeliveryQueue } from "./queue.ts";
import { MAX_BODY_BYTES, acceptDelivery, precheckDelivery } from "./accept-delivery.ts";

export interface Genstore {
  db: Database;
  storage: Storage;
  config: Config;
  close(): Promise<void>;
}

/**
 * Opens the database and storage that the environment configures (DATABASE_URL,
 * GENSTORE_STORAGE, S3_BUCKET, … as for the CLI). Open it once per server process and
 * reuse it across requests. The database must be migrated (`genstore db migrate`); the
 * embedded one is migrated here.
 */
export async function openGenstore(env: Env = process.env): Promise<Genstore> {
  const config = loadConfig(env);
  const db = await openDatabase(config.database, { generations: config.generations });
  try {
    await ensureMigrated(db);
    const storage = await createStorage(config.storage);
    return {
      db,
      storage,
      config,
      close: async () => {
        await storage.close();
        await db.close();
      },
    };
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
}

export interface HandleReplicateWebhookOptions {
  /** `whsec_…`; default config.webhookSecret (REPLICATE_WEBHOOK_SECRET). */
  secret?: string;
  db: Database;
  storage: Storage;
  config: Pick<Config, "outputHosts" | "maxOutputBytes"> & { webhookSecret?: string };
  /** The userId for an orphan prediction that names none. */
  user?: string;
  /**
   * Keeps the ingestion running after the response (Next.js `after` from next/server, or
   * Vercel's `waitUntil`): the 200 is sent as soon as the delivery is stored. Without it,
   * the delivery is ingested before the answer.
   */
  waitUntil?: (work: Promise<unknown>) => void;
  maxBodyBytes?: number;
  /** How long the claim on a delivery lasts while it is ingested (default 5 min). */
  leaseMs?: number;
  /** Replaces the pipeline (tests). */
  ingest?: IngestFunction;
}

/**
 * POST → 200 once the delivery is stored (and ingested, without waitUntil); 401 bad or
 * missing signature or a stale timestamp; 400 not JSON or not a prediction; 413 over
 * 10 MiB; 405 another method; 503 the database failed or the ingestion failed in a way a
 * retry can fix (Replicate retries the completed delivery; the queue keeps it meanwhile).
 */
export async function handleReplicateWebhook(
  request: Request,
  options: HandleReplicateWebhookOptions,
): Promise<Response> {
  if (request.method !== "POST") return json(405, { error: "use POST" }, { allow: "POST" });
  const secret = options.secret ?? options.config.webhookSecret;
  if (!secret) return json(500, { error: "the receiver has no webhook secret (REPLICATE_WEBHOOK_SECRET)" });
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  // What the headers alone decide is answered before the body is read.
  const declared = request.headers.get("content-length");
  const early = precheckDelivery({
    headers: request.headers,
    contentLength: declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined,
    maxBodyBytes,
    secret,
  });
  if (early) {
    await request.body?.cancel().catch(() => {});
    return json(early.status, early.body, early.status === 413 ? { connection: "close" } : {});
  }
  const body = await readBody(request, maxBodyBytes);
  if (body === undefined)
    return json(413, { error: `body over ${Math.round(maxBodyBytes / 1024 / 1024)} MiB` }, { connection: "close" });

  const queue = queueFor(options.db);
  const received = await acceptDelivery({
    body,
    headers: request.headers,
    query: new URL(request.url).searchParams,
    secret,
    queue,
  });
  if (!received.accepted)
    return json(received.status, received.body, received.status === 503 ? { "retry-after": "5" } : {});

  const process = createIngestProcessor(
    options.ingest ?? ingestPrediction,
    { db: options.db, storage: options.storage, config: options.config },
    { user: options.user },
  );
  const work = (async (): Promise<Response> => {
    // A redelivery of something already done (or being done by another worker) finds nothing to claim.
    const delivery = await queue.claimById(received.accepted!.webhookId, options.leaseMs ?? 5 * 60_000);
    if (!delivery) return json(200, received.body);
    try {
      const summary = await process({ ...delivery, params: searchParamsFrom(delivery.query) });
      await queue.complete(delivery);
      return json(200, { ...received.body, processed: summary });
    } catch (error) {
      const message = (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
      const final = (error as { retryable?: unknown } | null)?.retryable === false;
      await queue.fail(delivery, message, { final }).catch(() => {});
      // Retryable: a 503 makes Replicate send the completed delivery again. Final: retrying cannot help.
      return final
        ? json(200, { ...received.body, processed: false, error: message })
        : json(503, { error: message }, { "retry-after": "30" });
    }
  })();

  if (options.waitUntil) {
    options.waitUntil(work.catch(() => {}));
    return json(200, received.body);
  }
  return work.catch((error) =>
    json(
      503,
      { error: `the delivery is stored but could not be processed now: ${(error as Error).message}` },
      { "retry-after": "30" },
    ),
  );
}

// One queue per database, so that concurrent requests share its group-committed enqueue
// (a queue per request would commit every delivery on its own).
const queues = new WeakMap<Database, DeliveryQueue>();
function queueFor(db: Database): DeliveryQueue {
  let queue = queues.get(db);
  if (!queue) queues.set(db, (queue = createDeliveryQueue(db)));
  return queue;
}

/** The body as text, or undefined once it passes the limit (the rest is not read). */
async function readBody(request: Request, limit: number): Promise<string | undefined> {
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size).toString("utf8");
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}
