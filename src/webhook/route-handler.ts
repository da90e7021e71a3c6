// The library's web-standard webhook handler (a Next.js route handler, or anything that
// speaks Request/Response): the same checks and durable queue as `serve-webhook`, then the
// delivery is ingested right away, after the answer when the host can keep working
// (Next.js `after`, Vercel `waitUntil`), else before it. The route factories below open
// genstore on first use, retry a failed open on the next request, and answer 503 while the
// database cannot be used.
import { timingSafeEqual } from "node:crypto";
import { loadConfig, type Config, type Env } from "../config.ts";
import { openDatabase, type Database } from "../db/client.ts";
import { ensureMigrated } from "../db/migrations.ts";
import { ExitCode, describeError } from "../errors.ts";
import { ingestPrediction } from "../pipeline/ingest.ts";
import { createStorage } from "../storage/index.ts";
import type { Storage } from "../storage/types.ts";
import { deliveryQueueFor, drainDeliveries, type DrainOptions } from "./drain.ts";
import type { IngestFunction } from "../pipeline/types.ts";
import { createIngestProcessor } from "./ingest-delivery.ts";
import { searchParamsFrom } from "./queue.ts";
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
  /**
   * With waitUntil: after its own delivery, the same background work finishes up to this
   * many other due deliveries (ones a failed download or a stopped server left behind), so
   * nothing stays stranded where no `serve-webhook` runs. 0 turns it off (default 5).
   */
  drain?: number;
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

  const queue = deliveryQueueFor(options.db);
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
    const drain = options.drain ?? 5;
    options.waitUntil(
      work
        .then(async (response) => {
          if (response.status !== 200)
            console.error(`genstore: ${received.accepted!.webhookId} will be retried: ${await response.text()}`);
        })
        .catch(() => {})
        .then(() =>
          drain > 0
            ? drainDeliveries(
                { db: options.db, storage: options.storage, config: options.config },
                {
                  max: drain,
                  user: options.user,
                  ingest: options.ingest,
                  // Failed attempts go to the server's log; successes are the 200s already answered.
                  log: (line, level) => level !== "info" && console.error(`genstore: ${line}`),
                },
              )
            : undefined,
        )
        .catch(() => {}),
    );
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

// --- Routes that open genstore themselves --------------------------------------------

export interface WebhookRouteOptions {
  /**
   * Next.js `after` (from next/server) or Vercel's `waitUntil`: the 200 goes out once the
   * delivery is stored, and the ingestion (plus a few stranded deliveries) continues after it.
   */
  waitUntil?: (work: Promise<unknown>) => void;
  /** The userId for an orphan prediction that names none. */
  user?: string;
  /** Stranded deliveries finished after each answer (default 5; 0 turns it off). */
  drain?: number;
  /** Where the configuration comes from (default process.env, read on the first request). */
  env?: Env;
  /** Replaces the pipeline (tests). */
  ingest?: IngestFunction;
}

/**
 * A ready-made route handler: `export const POST = createWebhookRoute({ waitUntil: after })`.
 * Nothing is opened at import or at build; genstore opens on the first request. While the
 * database is unreachable or not migrated, it answers 503 with Retry-After (Replicate
 * retries), and the next request tries again: a bad start is never cached.
 */
export function createWebhookRoute(options: WebhookRouteOptions = {}): (request: Request) => Promise<Response> {
  const open = openOnDemand(options.env);
  return async (request) => {
    if (request.method !== "POST") return json(405, { error: "use POST" }, { allow: "POST" });
    const opened = await open();
    if (opened instanceof Response) return opened;
    const { db, storage, config } = opened;
    return handleReplicateWebhook(request, {
      db,
      storage,
      config,
      waitUntil: options.waitUntil,
      user: options.user,
      drain: options.drain,
      ingest: options.ingest,
    });
  };
}

export interface DrainRouteOptions extends Pick<DrainOptions, "max" | "timeMs" | "user" | "ingest"> {
  /**
   * The bearer token a caller must send (`Authorization: Bearer <secret>`, as Vercel Cron
   * does); default the CRON_SECRET variable. Without one the route refuses to run.
   */
  secret?: string;
  env?: Env;
}

/**
 * A ready-made cron route: `export const GET = createDrainRoute()`. Each call finishes
 * due deliveries (up to `max`, within `timeMs`) and answers 200 with what it did and what
 * is left: `{"processed":1,"failed":0,"remaining":{"pending":0,"processing":0,"failed":0}}`.
 */
export function createDrainRoute(options: DrainRouteOptions = {}): (request: Request) => Promise<Response> {
  const open = openOnDemand(options.env);
  return async (request) => {
    const secret = options.secret ?? (options.env ?? process.env).CRON_SECRET;
    if (!secret) return json(500, { error: "the drain route has no secret (set CRON_SECRET)" });
    if (!bearerMatches(request.headers.get("authorization"), secret))
      return json(401, { error: "missing or wrong Authorization: Bearer <CRON_SECRET>" });
    const opened = await open();
    if (opened instanceof Response) return opened;
    try {
      const result = await drainDeliveries(opened, {
        max: options.max,
        timeMs: options.timeMs,
        user: options.user,
        ingest: options.ingest,
      });
      return json(200, result);
    } catch (error) {
      return unavailable(error);
    }
  };
}

/**
 * Opens genstore on first use and keeps it for the process; concurrent first requests share
 * one attempt. A failed attempt is forgotten, so the next request tries again, and is
 * answered meanwhile (503 while the database cannot be used, 500 for a configuration error).
 */
function openOnDemand(env: Env | undefined): () => Promise<Genstore | Response> {
  return async () => {
    try {
      return await sharedGenstore(env ?? process.env);
    } catch (error) {
      return unavailable(error);
    }
  };
}

// Every route of the process shares one database pool and storage client per configuration.
const opened = new Map<string, Promise<Genstore>>();
function sharedGenstore(env: Env): Promise<Genstore> {
  const key = JSON.stringify(loadConfig(env));
  let genstore = opened.get(key);
  if (!genstore) {
    genstore = openGenstore(env);
    opened.set(key, genstore);
    genstore.catch(() => opened.delete(key));
  }
  return genstore;
}

/** The answer while genstore cannot be used: 503 and Retry-After when waiting can help. */
function unavailable(error: unknown): Response {
  const { message, hint, exitCode, isBug } = describeError(error);
  if (isBug) {
    console.error("genstore: unexpected error while opening:", error);
    return json(500, { error: message });
  }
  console.error(`genstore: ${message}${hint ? ` ${hint}` : ""}`);
  const transient = exitCode === ExitCode.database || exitCode === ExitCode.storage;
  if (transient) return json(503, { error: message, hint }, { "retry-after": "10" });
  return json(500, { error: message, hint });
}

function bearerMatches(header: string | null, secret: string): boolean {
  const given = Buffer.from(header?.replace(/^Bearer\s+/i, "") ?? "");
  const expected = Buffer.from(secret);
  return given.length === expected.length && timingSafeEqual(given, expected);
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
