// Rows of the WebhookDelivery table as a long-running receiver leaves them, aged in the
// database's own clock (times stored in UTC, as the queue writes them).

export type Query = (sql: string, params: unknown[]) => Promise<unknown>;

export interface AgedDeliveries {
  state: "pending" | "processing" | "done" | "failed";
  count: number;
  /** Days since the delivery finished (done, failed) or was last touched. */
  ageDays: number;
  /** Ids are `${prefix}${n}`. */
  prefix: string;
}

/** Inserts `count` deliveries in `state`, `ageDays` old. */
export async function insertAgedDeliveries(query: Query, rows: AgedDeliveries): Promise<void> {
  await query(
    `INSERT INTO "WebhookDelivery" (id, "predictionId", state, body, query, attempts, "receivedAt", "updatedAt", "doneAt", "lastError")
     SELECT $1::text || g::text, 'p' || g::text, $2::text, '{"id":"x","status":"succeeded"}'::jsonb, '{}'::jsonb, 1,
            (now() AT TIME ZONE 'UTC') - $3::int * interval '1 day' - interval '1 minute',
            (now() AT TIME ZONE 'UTC') - $3::int * interval '1 day',
            CASE WHEN $2::text = 'done' THEN (now() AT TIME ZONE 'UTC') - $3::int * interval '1 day' END,
            CASE WHEN $2::text = 'failed' THEN 'S3 unreachable' END
       FROM generate_series(1, $4::int) AS g`,
    [rows.prefix, rows.state, rows.ageDays, rows.count],
  );
}
