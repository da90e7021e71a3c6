// How the webhook worker splits a batch of claimed deliveries, as plain data. Non-final
// deliveries (starting, processing: no download) of the same prediction are written
// together, in one transaction for the whole batch, folded in the order they arrived through
// the same merge rules as one at a time (mergeGeneration: status only moves forward). A
// final delivery of a prediction in the same batch makes its non-final ones no-ops: the
// final status replaces whatever they would write, so they are only marked done. Final
// deliveries, and anything the batch cannot read, take the one-at-a-time pipeline.
import { isFinal, isStatus } from "./status.ts";

export interface BatchCandidate {
  /** The delivery's id (webhook-id). */
  id: string;
  predictionId: string;
  /** The prediction's status as the body says, or null when the body is not a prediction. */
  status: string | null;
  /** When the delivery was received (ms): the order in which it applies. */
  receivedAt: number;
}

export interface DeliveryBatchPlan {
  /** Per prediction, the non-final deliveries to fold into its row, in the order they apply. */
  apply: Array<{ predictionId: string; deliveryIds: string[] }>;
  /** Non-final deliveries whose prediction has a final delivery in this batch: done without a write. */
  superseded: string[];
  /** Deliveries for the full pipeline, oldest first: final states (downloads) and unreadable bodies. */
  single: string[];
}

const CHEAP: readonly string[] = ["starting", "processing"];

export function planDeliveryBatch(candidates: readonly BatchCandidate[]): DeliveryBatchPlan {
  const ordered = [...candidates].sort((a, b) => a.receivedAt - b.receivedAt || a.id.localeCompare(b.id));
  const finalFor = new Set(ordered.filter((c) => isStatus(c.status) && isFinal(c.status)).map((c) => c.predictionId));
  const groups = new Map<string, string[]>();
  const superseded: string[] = [];
  const single: string[] = [];
  for (const candidate of ordered) {
    if (candidate.status === null || !CHEAP.includes(candidate.status)) {
      single.push(candidate.id);
    } else if (finalFor.has(candidate.predictionId)) {
      superseded.push(candidate.id);
    } else {
      const group = groups.get(candidate.predictionId) ?? [];
      group.push(candidate.id);
      groups.set(candidate.predictionId, group);
    }
  }
  return {
    apply: [...groups].map(([predictionId, deliveryIds]) => ({ predictionId, deliveryIds })),
    superseded,
    single,
  };
}
