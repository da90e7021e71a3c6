// Many non-final deliveries (starting, processing) at once, for the webhook worker: the same
// decisions as ingestPrediction (planIngest, then mergeGeneration under the prediction's
// lock), folded delivery by delivery in memory and written for every prediction in one
// transaction (src/db/generations.ts writeRowsBatch). Nothing here downloads: a delivery that
// would store something, or that ingestPrediction would handle specially (a row to adopt by
// the webhook's generationId, a prediction it would refuse), is handed back for the
// one-at-a-time pipeline, which does it, or says why not, exactly as before.
import type { GenerationState } from "../core/generation-merge.ts";
import { mergeGeneration } from "../core/generation-merge.ts";
import type { GenerationRecord } from "../core/generation-table.ts";
import { planIngest, type ExistingRow } from "../core/ingest-plan.ts";
import { generationIdHint, userIdHints, type Prediction } from "../core/prediction.ts";
import type { Queryable } from "../db/client.ts";
import { writeRowsBatch, type BatchRowDecision } from "../db/generations.ts";
import { deliveryOf, downloadPolicy, newGenerationId, placementOf } from "./ingest.ts";
import type { Arrival, PipelineDeps } from "./types.ts";

export interface BatchIngestItem {
  /** The caller's name for it (the delivery's id). */
  key: string;
  prediction: Prediction;
  query: URLSearchParams;
}

export interface BatchIngestResult {
  /** Items whose prediction's row was written (or needed nothing), by key. */
  done: Map<string, { predictionId: string; generationId: string; outcome: "created" | "updated" | "unchanged" }>;
  /** Keys for the one-at-a-time pipeline. */
  single: string[];
}

export interface BatchIngestOptions {
  via: Arrival;
  /** The operator's --user: the last resort for an orphan. */
  user?: string;
  /** Runs in the batch's transaction after the rows are written, with the keys done. */
  also?: (tx: Queryable, doneKeys: string[]) => Promise<void>;
}

type State = GenerationState & { id: string };

/**
 * Writes each prediction's non-final deliveries (groups in the order they apply) in one
 * transaction. Items handed back in `single` were not written.
 */
export async function ingestBatch(
  deps: PipelineDeps,
  groups: ReadonlyArray<{ predictionId: string; items: readonly BatchIngestItem[] }>,
  options: BatchIngestOptions,
): Promise<BatchIngestResult> {
  const single = new Set<string>();
  const byPrediction = new Map(groups.map((g) => [g.predictionId, g.items]));
  const toSingle = (predictionId: string) => {
    for (const item of byPrediction.get(predictionId) ?? []) single.add(item.key);
  };
  const policy = downloadPolicy(deps);

  const decide = (current: ReadonlyMap<string, GenerationRecord>): BatchRowDecision[] => {
    const decisions: BatchRowDecision[] = [];
    for (const { predictionId, items } of groups) {
      const row = current.get(predictionId) ?? null;
      const decision = row === null && items.some(adoptsRow) ? undefined : fold(row, items);
      if (decision) decisions.push({ ...decision, replicateId: predictionId });
      else toSingle(predictionId);
    }
    return decisions;
  };

  const fold = (row: GenerationRecord | null, items: readonly BatchIngestItem[]) => {
    const newId = newGenerationId();
    let state: State | null = row;
    const changed = new Set<string>();
    for (const item of items) {
      const { prediction } = item;
      const plan = planIngest({
        prediction,
        row: state && ({ ...state, storageKeys: state.storageKeys } as ExistingRow),
        hints: userIdHints(prediction, item.query),
        fallbackUserId: options.user ?? null,
        newId,
      });
      if (!plan.ok || plan.toStore.length > 0) return undefined;
      const ctx = {
        deps,
        request: { prediction, via: options.via, query: item.query, user: options.user },
        policy,
        placement: placementOf(plan, false),
      };
      const write = mergeGeneration(state, deliveryOf(ctx, plan, { status: plan.status }));
      if (write === null) continue;
      state = state === null ? { ...(write as GenerationState), id: newId } : { ...state, ...write };
      for (const field of Object.keys(write)) changed.add(field);
    }
    if (state === null) return undefined;
    return { newId, next: state, changed: row === null ? Object.keys(state) : [...changed] };
  };

  const keysOf = (predictionIds: Iterable<string>) =>
    [...predictionIds].flatMap((id) => (byPrediction.get(id) ?? []).map((item) => item.key));

  const written = await writeRowsBatch(
    deps.db,
    groups.map((g) => g.predictionId),
    decide,
    async (tx, result) => {
      for (const id of result.skipped) toSingle(id);
      await options.also?.(tx, keysOf(result.written.keys()));
    },
  );
  const done: BatchIngestResult["done"] = new Map();
  for (const [predictionId, row] of written.written) {
    const outcome = row.created ? "created" : row.changed ? "updated" : "unchanged";
    for (const item of byPrediction.get(predictionId) ?? [])
      done.set(item.key, { predictionId, generationId: row.id, outcome });
  }
  return { done, single: [...single] };
}

/** A webhook query's generationId names the row to adopt: ingestPrediction's path, not the batch's. */
function adoptsRow(item: BatchIngestItem): boolean {
  return generationIdHint(item.query)?.accepted === true;
}

export type { Prediction };
