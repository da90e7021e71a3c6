// Turns a queued delivery into an ingestion-pipeline call, and its result into the words
// of the delivery's log line; and many non-final deliveries into one batch write.
import { planDeliveryBatch } from "../core/delivery-batch.ts";
import { givenUpWrite } from "../core/generation-merge.ts";
import { parsePrediction, type Prediction } from "../core/prediction.ts";
import type { Database } from "../db/client.ts";
import { updateExistingRow } from "../db/generations.ts";
import { ingestBatch } from "../pipeline/ingest-batch.ts";
import type { IngestFunction, IngestResult, PipelineDeps } from "../pipeline/types.ts";
import { completeClaims, searchParamsFrom, type ClaimedDelivery } from "./queue.ts";
import type { DeliveryProcessor } from "./worker.ts";

export function createIngestProcessor(
  ingest: IngestFunction,
  deps: PipelineDeps,
  options: { user?: string } = {},
): DeliveryProcessor {
  return async (delivery) => {
    const parsed = parsePrediction(delivery.body);
    // The receiver checked this before queueing; a row written by an older version might not
    // pass. No later attempt can change the stored body: the delivery fails at once.
    if (!parsed.ok) throw new PermanentDeliveryError(`the stored body is refused: ${parsed.reason}`);
    let result: IngestResult;
    try {
      result = await ingest(deps, {
        prediction: parsed.prediction,
        via: "webhook",
        query: delivery.params,
        user: options.user,
      });
    } catch (error) {
      // A body that exhausts a recursive serializer's stack does so on every attempt.
      if (error instanceof RangeError && /call stack/i.test(error.message))
        throw new PermanentDeliveryError(`the body cannot be written: ${error.message}`);
      throw error;
    }
    return `${parsed.prediction.status} ${describeIngestResult(result)}`;
  };
}

/** A delivery that no later attempt can process (the worker marks it failed at once). */
export class PermanentDeliveryError extends Error {
  override name = "PermanentDeliveryError";
  readonly retryable = false;
}

/** "→ stored 2 objects (1 output, 1 thumbnail)", "→ unchanged (already stored)", … */
export function describeIngestResult(result: IngestResult): string {
  const parts: string[] = [];
  const outputs = result.stored.filter((o) => o.kind === "output").length;
  const thumbnails = result.stored.length - outputs;
  if (result.stored.length > 0) {
    const detail = thumbnails > 0 ? ` (${plural(outputs, "output")}, ${plural(thumbnails, "thumbnail")})` : "";
    parts.push(`stored ${plural(result.stored.length, "object")}${detail}`);
  } else if (result.outcome === "unchanged") {
    parts.push(
      result.alreadyStored.length > 0
        ? `unchanged (${plural(result.alreadyStored.length, "object")} already stored)`
        : "unchanged",
    );
  } else {
    parts.push(`row ${result.outcome}, status ${result.status}`);
  }
  if (result.expired.length > 0) parts.push(`${plural(result.expired.length, "output")} expired (the file is gone)`);
  if (result.warnings.length > 0)
    parts.push(
      `warning: ${result.warnings[0]}${result.warnings.length > 1 ? ` (+${result.warnings.length - 1} more)` : ""}`,
    );
  return `→ ${parts.join("; ")} [generation ${result.generationId}, user ${result.userId}]`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** Handles many claimed deliveries at once; returns those left for the one-at-a-time processor. */
export type DeliveryBatchProcessor = (deliveries: ClaimedDelivery[]) => Promise<DeliveryBatchResult>;

export interface DeliveryBatchResult {
  /** Deliveries for the one-at-a-time processor (final states, anything the batch does not write), oldest first. */
  single: ClaimedDelivery[];
  /** Deliveries marked done by the batch, by outcome: created, updated, unchanged, superseded. */
  outcomes: Record<"created" | "updated" | "unchanged" | "superseded", number>;
  /** Done deliveries whose claim had been lost (another worker repeats them: harmless). */
  lost: number;
  /** The batch's log line. */
  line: string;
}

/**
 * The worker's batch step (planDeliveryBatch, then ingestBatch): non-final deliveries are
 * folded into their rows and marked done in one transaction; the ones a final delivery of the
 * same prediction makes no-ops are marked done with them; the rest is handed back.
 */
export function createBatchIngestProcessor(
  deps: PipelineDeps,
  options: { user?: string } = {},
): DeliveryBatchProcessor {
  return async (deliveries) => {
    const started = Date.now();
    const byId = new Map<string, { delivery: ClaimedDelivery; prediction?: Prediction }>();
    for (const delivery of deliveries) {
      const parsed = parsePrediction(delivery.body);
      byId.set(delivery.id, { delivery, prediction: parsed.ok ? parsed.prediction : undefined });
    }
    const plan = planDeliveryBatch(
      deliveries.map((d) => {
        const prediction = byId.get(d.id)!.prediction;
        return {
          id: d.id,
          predictionId: prediction?.id ?? d.predictionId,
          status: prediction?.status ?? null,
          receivedAt: d.receivedAt.getTime(),
        };
      }),
    );
    const claimOf = (id: string) => byId.get(id)!.delivery;
    const superseded = plan.superseded.map(claimOf);
    let completed = new Set<string>();
    const outcomes: DeliveryBatchResult["outcomes"] = { created: 0, updated: 0, unchanged: 0, superseded: 0 };
    let single = plan.single;
    if (plan.apply.length === 0) {
      completed = await completeClaims(deps.db, superseded);
    } else {
      const groups = plan.apply.map((group) => ({
        predictionId: group.predictionId,
        items: group.deliveryIds.map((id) => ({
          key: id,
          prediction: byId.get(id)!.prediction!,
          query: searchParamsFrom(claimOf(id).query),
        })),
      }));
      const result = await ingestBatch(deps, groups, {
        via: "webhook",
        user: options.user,
        also: async (tx, doneKeys) => {
          completed = await completeClaims(tx, [...doneKeys.map(claimOf), ...superseded]);
        },
      });
      for (const done of result.done.values()) outcomes[done.outcome] += 1;
      single = [...single, ...result.single];
    }
    outcomes.superseded = superseded.length;
    const handled = deliveries.length - single.length;
    const lost = handled - completed.size;
    const rest = single.map(claimOf).sort((a, b) => a.receivedAt.getTime() - b.receivedAt.getTime());
    const parts = [
      `${outcomes.created} rows created`,
      `${outcomes.updated} updated`,
      `${outcomes.unchanged} unchanged`,
      ...(outcomes.superseded > 0 ? [`${outcomes.superseded} superseded by a final delivery`] : []),
      ...(rest.length > 0 ? [`${rest.length} to the pipeline`] : []),
      ...(lost > 0 ? [`${lost} whose lease ran out meanwhile`] : []),
    ];
    return {
      single: rest,
      outcomes,
      lost,
      line: `batch of ${deliveries.length} deliveries → ${parts.join(", ")} (${Date.now() - started} ms)`,
    };
  };
}

/** Writes on the prediction's row (when it has one) why its delivery was given up; true when written. */
export function recordGivenUp(
  db: Database,
  delivery: Pick<ClaimedDelivery, "id" | "predictionId" | "attempt">,
  givenUp: { reason: string; error: string },
): Promise<boolean> {
  return updateExistingRow(db, delivery.predictionId, (row) =>
    givenUpWrite(row, {
      webhookId: delivery.id,
      attempts: delivery.attempt,
      reason: givenUp.reason,
      lastError: givenUp.error,
      at: new Date(),
    }),
  );
}
