// The durable queue of webhook deliveries, over the WebhookDelivery table. A delivery is
// inserted before the receiver answers 2xx, so an ack is never lost; workers (in this
// process or in other receivers sharing the database) claim rows with a lease, so a
// crashed worker's deliveries are picked up again when the lease runs out.
//
// Raw SQL on purpose: the claim needs FOR UPDATE SKIP LOCKED and ON CONFLICT DO NOTHING,
// which Prisma's query API does not express. The SQL runs on PostgreSQL and PGlite alike.
// Timestamps are written in UTC (`now() AT TIME ZONE 'UTC'`), as Prisma writes them.
import { BACKOFF, type BackoffPolicy } from "../core/backoff.ts";
import {
  DEFAULT_RETRY_WINDOW_MS,
  decideDeliveryRetry,
  maxDeliveryAttempts,
  windowEndedReason,
} from "../core/delivery-retry.ts";
import type { Database } from "../db/client.ts";

const NOW = `(now() AT TIME ZONE 'UTC')`;

export type DeliveryState = "pending" | "processing" | "done" | "failed";

/** The webhook URL's query string as stored: a repeated parameter keeps all its values. */
export type StoredQuery = Record<string, string | string[]>;

export interface NewDelivery {
  /** The `webhook-id` header (identical across Replicate's retries). */
  id: string;
  predictionId: string;
  /** The raw JSON body, as received and verified: one JSON value (anything else is refused). */
  body: string;
  query: StoredQuery;
}

export interface ClaimedDelivery {
  id: string;
  predictionId: string;
  body: unknown;
  query: StoredQuery;
  /** This claim's attempt number (1 for the first); also the fencing token of the claim. */
  attempt: number;
  receivedAt: Date;
}

export interface FailOutcome {
  /** "retry": back to pending until retryAt; "failed": given up, kept with lastError. */
  state: "retry" | "failed" | "lost";
  retryAt?: Date;
  /** Why a retryable failure was given up ("its retry window ended at …"); absent for a permanent one. */
  reason?: string;
}

export interface QueueCounts {
  pending: number;
  processing: number;
  failed: number;
}

export interface FailedDelivery {
  id: string;
  predictionId: string;
  attempts: number;
  lastError: string | null;
  receivedAt: Date;
}

export interface QueueHealth extends QueueCounts {
  /** Seconds since the oldest delivery not yet done (pending or processing) was received; null when none. */
  oldestPendingSeconds: number | null;
}

export interface DeliveryQueue {
  /** Inserts a delivery; a webhook-id seen before changes nothing and answers duplicate. */
  enqueue(delivery: NewDelivery): Promise<{ duplicate: boolean }>;
  /**
   * Claims up to `limit` deliveries that are pending and due, or processing with an expired
   * lease (a crashed worker's), oldest first, skipping rows another worker is claiming.
   * With `statuses`, only deliveries whose prediction has one of them (the worker takes
   * non-final ones only while its downloads are busy).
   */
  claim(limit: number, leaseMs: number, options?: { statuses?: readonly string[] }): Promise<ClaimedDelivery[]>;
  /**
   * Claims one delivery by id when nobody holds it (pending, even before its backoff is
   * over, or processing with an expired lease): a redelivery is a good moment to retry.
   */
  claimById(id: string, leaseMs: number): Promise<ClaimedDelivery | undefined>;
  /** Extends a claim's lease; false when the claim was lost (its lease expired and another worker took it). */
  renew(delivery: Pick<ClaimedDelivery, "id" | "attempt">, leaseMs: number): Promise<boolean>;
  /** Marks a claimed delivery done; false when the claim was lost meanwhile. */
  complete(delivery: Pick<ClaimedDelivery, "id" | "attempt">): Promise<boolean>;
  /** complete() for many, in one statement; the ids whose claim still held. */
  completeMany(deliveries: ReadonlyArray<Pick<ClaimedDelivery, "id" | "attempt">>): Promise<Set<string>>;
  /**
   * Records a failed attempt: back to pending after a backoff, or failed once its retry window
   * has passed (src/core/delivery-retry.ts), or at once when `final` (an error that no retry can fix).
   */
  fail(
    delivery: Pick<ClaimedDelivery, "id" | "attempt" | "body" | "receivedAt">,
    error: string,
    options?: { final?: boolean },
  ): Promise<FailOutcome>;
  /**
   * Marks failed the deliveries whose lease expired after their last attempt (a worker died
   * on them every time: retrying forever could crash every receiver in turn).
   */
  failAbandoned(): Promise<number>;
  counts(): Promise<QueueCounts>;
  /** Failed deliveries received since `since` (all without), oldest first, `limit` after the cursor (the last one's id). */
  listFailed(options: { limit: number; after?: string; since?: Date }): Promise<FailedDelivery[]>;
  /**
   * Puts these failed deliveries back in the queue (pending, due now, with a fresh count of
   * attempts; lastError is kept until the next attempt), for a worker to take; returns how many.
   */
  retryFailed(ids: readonly string[]): Promise<number>;
  /** counts(), and the age of the oldest delivery not yet done (in the database's clock). */
  health(): Promise<QueueHealth>;
  /**
   * The moment `ageMs` before the database's clock, as the table stores times (UTC): the
   * cut-off of a retention run, fixed once so that its batches agree.
   */
  retentionCutoff(ageMs: number): Promise<string>;
  /** How many done deliveries finished before the cut-off. */
  countDone(before: string): Promise<number>;
  /**
   * Deletes up to `limit` done deliveries that finished before the cut-off, oldest first,
   * skipping rows another statement holds; returns how many. Failed deliveries are never
   * deleted: they wait for an operator.
   */
  deleteDone(before: string, limit: number): Promise<number>;
  /**
   * Makes deliveries waiting out a backoff due now (what failed them may be over: storage came
   * back), the soonest due first, up to `limit` (default all); returns how many.
   */
  releaseWaiting(limit?: number): Promise<number>;
}

export interface DeliveryQueueOptions {
  /** How long after the prediction's completed_at a retryable failure is still retried (default 1 h). */
  retryWindowMs?: number;
  /** Runs the enqueues (default db): connections of their own keep acks from waiting behind the worker's statements. */
  enqueueDb?: Pick<Database, "query">;
}

/** The queue over db; a failed attempt is retried after `backoff`'s waits, until its retry window has passed. */
export function createDeliveryQueue(
  db: Pick<Database, "query">,
  backoff: BackoffPolicy = BACKOFF.delivery,
  options: DeliveryQueueOptions = {},
): DeliveryQueue {
  const retryWindowMs = options.retryWindowMs ?? DEFAULT_RETRY_WINDOW_MS;
  // maxAttempts is the guard against a delivery whose worker dies during every attempt (a body
  // that crashes the receiver): past the attempts its window allows, it is not claimed again.
  const policy: BackoffPolicy = { ...backoff, maxAttempts: maxDeliveryAttempts(backoff, retryWindowMs) };
  return {
    enqueue: createEnqueueBatcher(options.enqueueDb ?? db),

    async claim(limit, leaseMs, options = {}) {
      if (limit <= 0) return [];
      const statuses = options.statuses;
      const ofStatus = statuses ? `AND body->>'status' = ANY($4::text[])` : "";
      // Due pending deliveries and expired leases, oldest first: each read in the order of the
      // (state, receivedAt) index, so that a claim reads about as many rows as it takes. One
      // condition with OR read every pending row and sorted them, at each claim (a 40,000
      // backlog drained at ~500/s). A row the outer LIMIT leaves is unlocked as the statement ends.
      const rows = await db.query<ClaimRow>(
        `WITH pending AS (
           SELECT id, "receivedAt" FROM "WebhookDelivery"
            WHERE state = 'pending' AND ("lockedUntil" IS NULL OR "lockedUntil" <= ${NOW}) ${ofStatus}
            ORDER BY "receivedAt" LIMIT $1 FOR UPDATE SKIP LOCKED
         ), expired AS (
           SELECT id, "receivedAt" FROM "WebhookDelivery"
            WHERE state = 'processing' AND "lockedUntil" < ${NOW} AND attempts < $3 ${ofStatus}
            ORDER BY "receivedAt" LIMIT $1 FOR UPDATE SKIP LOCKED
         ), due AS (
           SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS both_kinds
            ORDER BY "receivedAt" LIMIT $1
         )
         UPDATE "WebhookDelivery"
            SET state = 'processing', attempts = attempts + 1,
                "lockedUntil" = ${NOW} + $2 * interval '1 millisecond', "updatedAt" = ${NOW}
          WHERE id IN (SELECT id FROM due)
        RETURNING id, "predictionId", body, query, attempts, "receivedAt"`,
        limit,
        leaseMs,
        policy.maxAttempts,
        ...(statuses ? [statuses] : []),
      );
      return rows.map(claimedFrom).sort((a, b) => a.receivedAt.getTime() - b.receivedAt.getTime());
    },

    async claimById(id, leaseMs) {
      const rows = await db.query<ClaimRow>(
        `UPDATE "WebhookDelivery"
            SET state = 'processing', attempts = attempts + 1,
                "lockedUntil" = ${NOW} + $2 * interval '1 millisecond', "updatedAt" = ${NOW}
          WHERE id = (
            SELECT id FROM "WebhookDelivery"
             WHERE id = $1 AND (state = 'pending' OR (state = 'processing' AND "lockedUntil" < ${NOW}))
             FOR UPDATE SKIP LOCKED)
        RETURNING id, "predictionId", body, query, attempts, "receivedAt"`,
        id,
        leaseMs,
      );
      return rows.map(claimedFrom)[0];
    },

    async renew(delivery, leaseMs) {
      const rows = await db.query(
        `UPDATE "WebhookDelivery" SET "lockedUntil" = ${NOW} + $3 * interval '1 millisecond', "updatedAt" = ${NOW}
          WHERE id = $1 AND attempts = $2 AND state = 'processing' RETURNING id`,
        delivery.id,
        delivery.attempt,
        leaseMs,
      );
      return rows.length > 0;
    },

    async complete(delivery) {
      const rows = await db.query(
        `UPDATE "WebhookDelivery" SET state = 'done', "doneAt" = ${NOW}, "lockedUntil" = NULL, "updatedAt" = ${NOW}
          WHERE id = $1 AND attempts = $2 AND state = 'processing' RETURNING id`,
        delivery.id,
        delivery.attempt,
      );
      return rows.length > 0;
    },

    completeMany: (deliveries) => completeClaims(db, deliveries),

    async fail(delivery, error, options = {}) {
      const decision = decideDeliveryRetry(policy, retryWindowMs, {
        attempt: delivery.attempt,
        permanent: options.final === true,
        body: delivery.body,
        receivedAt: delivery.receivedAt,
        now: new Date(),
      });
      const last = !decision.retry;
      const delayMs = decision.retry ? decision.delayMs : 0;
      const reason =
        !decision.retry && decision.reason === "window" ? windowEndedReason(retryWindowMs, decision) : undefined;
      const rows = await db.query<{ lockedUntil: Date | string | null }>(
        `UPDATE "WebhookDelivery"
            SET state = $3, "lastError" = $4, "updatedAt" = ${NOW},
                "lockedUntil" = CASE WHEN $3 = 'pending' THEN ${NOW} + $5 * interval '1 millisecond' ELSE NULL END
          WHERE id = $1 AND attempts = $2 AND state = 'processing'
        RETURNING "lockedUntil"`,
        delivery.id,
        delivery.attempt,
        last ? "failed" : "pending",
        reason ? `${error} (given up: ${reason})` : error,
        delayMs,
      );
      if (rows.length === 0) return { state: "lost" };
      if (last) return reason ? { state: "failed", reason } : { state: "failed" };
      return { state: "retry", retryAt: new Date(Date.now() + delayMs) };
    },

    async failAbandoned() {
      const rows = await db.query(
        `UPDATE "WebhookDelivery"
            SET state = 'failed', "lockedUntil" = NULL, "updatedAt" = ${NOW},
                "lastError" = concat_ws(' / ', "lastError", 'the worker stopped during its last attempt (' || attempts || ' attempts)')
          WHERE state = 'processing' AND "lockedUntil" < ${NOW} AND attempts >= $1
        RETURNING id`,
        policy.maxAttempts,
      );
      return rows.length;
    },

    async retentionCutoff(ageMs) {
      const [row] = await db.query<{ before: string }>(
        `SELECT to_char(${NOW} - $1 * interval '1 millisecond', 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS before`,
        ageMs,
      );
      return row!.before;
    },

    async countDone(before) {
      const [row] = await db.query<{ n: number | string }>(
        `SELECT count(*) AS n FROM "WebhookDelivery" WHERE ${DONE_BEFORE}`,
        before,
      );
      return Number(row?.n ?? 0);
    },

    async deleteDone(before, limit) {
      const [row] = await db.query<{ n: number | string }>(
        `WITH gone AS (
           DELETE FROM "WebhookDelivery" WHERE id IN (
             SELECT id FROM "WebhookDelivery" WHERE ${DONE_BEFORE}
              ORDER BY "receivedAt" LIMIT $2
              FOR UPDATE SKIP LOCKED)
           RETURNING 1)
         SELECT count(*) AS n FROM gone`,
        before,
        limit,
      );
      return Number(row?.n ?? 0);
    },

    async listFailed({ limit, after, since }) {
      const rows = await db.query<FailedDelivery & { receivedAt: Date | string }>(
        `SELECT id, "predictionId", attempts, "lastError", "receivedAt" FROM "WebhookDelivery"
          WHERE state = 'failed'
            AND ($2::text IS NULL OR ("receivedAt", id) > (SELECT "receivedAt", id FROM "WebhookDelivery" WHERE id = $2))
            AND ($3::timestamp IS NULL OR "receivedAt" >= $3::timestamp)
          ORDER BY "receivedAt", id
          LIMIT $1`,
        limit,
        after ?? null,
        since ? since.toISOString().replace("Z", "") : null,
      );
      return rows.map((r) => ({ ...r, attempts: Number(r.attempts), receivedAt: new Date(r.receivedAt) }));
    },

    async retryFailed(ids) {
      if (ids.length === 0) return 0;
      const rows = await db.query(
        `UPDATE "WebhookDelivery" SET state = 'pending', attempts = 0, "lockedUntil" = NULL, "updatedAt" = ${NOW}
          WHERE id = ANY($1::text[]) AND state = 'failed' RETURNING id`,
        [...ids],
      );
      return rows.length;
    },

    async health() {
      const rows = await db.query<{ state: string; n: number | string; age: number | string | null }>(
        `SELECT state, count(*) AS n, extract(epoch FROM ${NOW} - min("receivedAt")) AS age
           FROM "WebhookDelivery" WHERE state IN ('pending', 'processing', 'failed') GROUP BY state`,
      );
      const health: QueueHealth = { pending: 0, processing: 0, failed: 0, oldestPendingSeconds: null };
      for (const row of rows) {
        if (!(row.state in health)) continue;
        health[row.state as keyof QueueCounts] = Number(row.n);
        if (row.state !== "failed" && row.age !== null)
          health.oldestPendingSeconds = Math.max(health.oldestPendingSeconds ?? 0, Math.max(0, Number(row.age)));
      }
      if (health.oldestPendingSeconds !== null)
        health.oldestPendingSeconds = Math.round(health.oldestPendingSeconds * 1000) / 1000;
      return health;
    },

    async releaseWaiting(limit) {
      const [row] = await db.query<{ n: number | string }>(
        `WITH released AS (
           UPDATE "WebhookDelivery" SET "lockedUntil" = ${NOW}, "updatedAt" = ${NOW}
            WHERE id IN (
              SELECT id FROM "WebhookDelivery"
               WHERE state = 'pending' AND "lockedUntil" > ${NOW}
               ORDER BY "lockedUntil"
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
           RETURNING 1)
         SELECT count(*) AS n FROM released`,
        limit ?? null,
      );
      return Number(row?.n ?? 0);
    },

    async counts() {
      const rows = await db.query<{ state: string; n: number | string }>(
        // Done rows are not counted: they pile up, and the (state, receivedAt) index skips them.
        `SELECT state, count(*) AS n FROM "WebhookDelivery" WHERE state IN ('pending', 'processing', 'failed') GROUP BY state`,
      );
      const counts: QueueCounts = { pending: 0, processing: 0, failed: 0 };
      for (const row of rows) if (row.state in counts) counts[row.state as keyof QueueCounts] = Number(row.n);
      return counts;
    },
  };
}

/**
 * Marks claimed deliveries done in one statement, on db or inside a caller's transaction (the
 * batch writes rows and completes their deliveries in one commit). A claim that was lost (its
 * lease ran out and another worker took it: another attempt number) is left alone, as
 * complete() does. Returns the ids marked done.
 */
export async function completeClaims(
  db: Pick<Database, "query">,
  deliveries: ReadonlyArray<Pick<ClaimedDelivery, "id" | "attempt">>,
): Promise<Set<string>> {
  if (deliveries.length === 0) return new Set();
  const rows = await db.query<{ id: string }>(
    `UPDATE "WebhookDelivery" AS w
        SET state = 'done', "doneAt" = ${NOW}, "lockedUntil" = NULL, "updatedAt" = ${NOW}
       FROM unnest($1::text[], $2::int[]) AS c(id, attempt)
      WHERE w.id = c.id AND w.attempts = c.attempt AND w.state = 'processing'
    RETURNING w.id`,
    deliveries.map((d) => d.id),
    deliveries.map((d) => d.attempt),
  );
  return new Set(rows.map((row) => row.id));
}

/**
 * Done before the cut-off $1. A delivery is received before it is done, so the receivedAt
 * bound lets the (state, receivedAt) index narrow the scan; a done row without doneAt
 * (written by an older version) counts from its last update.
 */
const DONE_BEFORE = `state = 'done' AND "receivedAt" < $1::timestamp AND coalesce("doneAt", "updatedAt") < $1::timestamp`;

const MAX_BATCH = 100;
/** Bodies can reach 10 MiB each: a batch stops growing here (it always takes at least one). */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/**
 * One statement at a time, the next sent as soon as the previous commits, with everything
 * that arrived meanwhile. A second statement in flight halved the batches and cost the
 * database more CPU per delivery (each statement and commit has a fixed cost) for no
 * better throughput or p99 in bench/webhook.ts.
 */
const FLUSHES_IN_FLIGHT = 1;

/**
 * Enqueues in batches ("group commit"): while INSERTs are in flight, the deliveries that
 * arrive wait and then go in together, as one multi-row INSERT and one commit. Each caller
 * is answered only after the statement holding its row has committed, so the ack stays
 * durable; under load this saves a commit (a WAL flush) per delivery.
 */
function createEnqueueBatcher(db: Pick<Database, "query">): DeliveryQueue["enqueue"] {
  type Waiting = {
    delivery: NewDelivery;
    resolve: (result: { duplicate: boolean }) => void;
    reject: (error: unknown) => void;
  };
  const waiting: Waiting[] = [];
  let flushing = 0;

  // One statement text whatever the batch size, with four parameters: each column as a JSON
  // array. It costs PostgreSQL less to parse and plan than a VALUES list of 4 parameters a
  // row, and the bodies need no escaping: each is one JSON value already (the receiver
  // parsed it), so they are joined into the array as they are. A body that is not one JSON
  // value makes the arrays' lengths differ (a NULL id) or the array invalid, and a body
  // jsonb refuses fails it too: the statement fails as a whole, and flush() retries row by row.
  const insert = async (batch: NewDelivery[]): Promise<Set<string>> => {
    const rows = await db.query<{ id: string }>(
      `INSERT INTO "WebhookDelivery" (id, "predictionId", state, body, query, attempts, "receivedAt", "updatedAt")
       SELECT d.id, d."predictionId", 'pending', d.body, d.query, 0, ${NOW}, ${NOW}
         FROM ROWS FROM (
                jsonb_array_elements_text($1::jsonb), jsonb_array_elements_text($2::jsonb),
                jsonb_array_elements($3::jsonb), jsonb_array_elements($4::jsonb)
              ) AS d(id, "predictionId", body, query)
       ON CONFLICT (id) DO NOTHING
       RETURNING id`,
      JSON.stringify(batch.map((d) => d.id)),
      JSON.stringify(batch.map((d) => d.predictionId)),
      `[${batch.map((d) => d.body).join(",")}]`,
      JSON.stringify(batch.map((d) => d.query)),
    );
    return new Set(rows.map((row) => row.id));
  };

  const takeBatch = (): Waiting[] => {
    let count = 0;
    let bytes = 0;
    while (count < waiting.length && count < MAX_BATCH) {
      bytes += waiting[count]!.delivery.body.length;
      if (count > 0 && bytes > MAX_BATCH_BYTES) break;
      count += 1;
    }
    return waiting.splice(0, count);
  };

  const settle = (batch: Waiting[], inserted: Set<string>) => {
    // The same webhook-id twice in one batch: the first is new, the rest are duplicates.
    const seen = new Set<string>();
    for (const item of batch) {
      const fresh = inserted.has(item.delivery.id) && !seen.has(item.delivery.id);
      seen.add(item.delivery.id);
      item.resolve({ duplicate: !fresh });
    }
  };

  const flush = async () => {
    flushing += 1;
    while (waiting.length > 0) {
      const batch = takeBatch();
      try {
        settle(batch, await insert(batch.map((item) => item.delivery)));
      } catch (error) {
        if (batch.length === 1) {
          batch[0]!.reject(error);
          continue;
        }
        // One body PostgreSQL refuses (or a dropped connection) must not fail the others: one by one.
        for (const item of batch) {
          try {
            settle([item], await insert([item.delivery]));
          } catch (single) {
            item.reject(single);
          }
        }
      }
    }
    flushing -= 1;
  };

  return (delivery) =>
    new Promise((resolve, reject) => {
      waiting.push({ delivery, resolve, reject });
      if (flushing < FLUSHES_IN_FLIGHT) void flush();
    });
}

interface ClaimRow {
  id: string;
  predictionId: string;
  body: unknown;
  query: unknown;
  attempts: number;
  receivedAt: Date | string;
}

function claimedFrom(row: ClaimRow): ClaimedDelivery {
  return {
    id: row.id,
    predictionId: row.predictionId,
    body: typeof row.body === "string" ? JSON.parse(row.body) : row.body,
    query: (typeof row.query === "string" ? JSON.parse(row.query) : (row.query ?? {})) as StoredQuery,
    attempt: Number(row.attempts),
    receivedAt: row.receivedAt instanceof Date ? row.receivedAt : new Date(row.receivedAt),
  };
}

/** A URL's query string as stored; a repeated parameter keeps every value. */
export function storedQueryFrom(params: URLSearchParams): StoredQuery {
  const query: StoredQuery = {};
  for (const key of new Set(params.keys())) {
    const values = params.getAll(key);
    query[key] = values.length === 1 ? values[0]! : values;
  }
  return query;
}

/** The stored query back as URLSearchParams (what the pipeline reads userId/generationId from). */
export function searchParamsFrom(query: StoredQuery): URLSearchParams {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) if (typeof item === "string") params.append(key, item);
  }
  return params;
}
