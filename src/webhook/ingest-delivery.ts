// Turns a queued delivery into an ingestion-pipeline call, and its result into the words
// of the delivery's log line.
import { givenUpWrite } from "../core/generation-merge.ts";
import { parsePrediction } from "../core/prediction.ts";
import type { Database } from "../db/client.ts";
import { updateExistingRow } from "../db/generations.ts";
import type { IngestFunction, IngestResult, PipelineDeps } from "../pipeline/types.ts";
import type { ClaimedDelivery } from "./queue.ts";
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
