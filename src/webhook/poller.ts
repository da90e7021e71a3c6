// The second half of the seed's "webhook + polling": while `serve-webhook` runs, rows left in
// starting or processing that nothing has written for a while (a webhook that never came, a
// delivery given up, a receiver that was down) are fetched from Replicate and put through
// the pipeline: `recover --pending` (src/jobs/recover.ts), run on a schedule.
import { setTimeout as sleepFor } from "node:timers/promises";
import { isFailedState } from "../core/recover-plan.ts";
import { runRecover, type RecoverResult } from "../jobs/recover.ts";
import type { IngestFunction, PipelineDeps } from "../pipeline/types.ts";
import type { ReplicateApi } from "../replicate/client.ts";

export interface StuckPollerInput {
  /** A row starting or processing that nothing has written for this long is polled. */
  untouchedForMs: number;
  /** How often the rows are looked for. */
  everyMs: number;
  /** The userId for a prediction that has no row and names none (as serve-webhook's --user). */
  user?: string;
  /** Predictions fetched and ingested at once (default 2: the receiver's worker comes first). */
  concurrency?: number;
}

export interface StuckPollerDeps {
  replicate: ReplicateApi;
  ingest: IngestFunction;
  pipeline: Pick<PipelineDeps, "db" | "storage" | "config">;
  log: (line: string, level: "info" | "warn" | "error") => void;
  /** Stops the poller (between rounds, and the round in progress). */
  signal: AbortSignal;
}

/** Polls until the signal aborts; never throws. */
export async function pollStuckRows(input: StuckPollerInput, deps: StuckPollerDeps): Promise<void> {
  while (!deps.signal.aborted) {
    try {
      const result = await runRecover(
        { pending: true, untouchedForMs: input.untouchedForMs, user: input.user, concurrency: input.concurrency ?? 2 },
        {
          replicate: deps.replicate,
          ingest: deps.ingest,
          pipeline: { ...deps.pipeline, signal: deps.signal },
          signal: deps.signal,
        },
      );
      if (!deps.signal.aborted) report(result, deps.log);
    } catch (error) {
      if (!deps.signal.aborted)
        deps.log(`poll: could not poll stuck rows (${oneLine(error)}); trying again later`, "warn");
    }
    await sleepFor(input.everyMs, undefined, { signal: deps.signal }).catch(() => undefined);
  }
}

/** One line a round that found something: "poll: 2 predictions: 1 stored, 1 still running." */
function report(result: RecoverResult, log: StuckPollerDeps["log"]): void {
  if (result.stopped && result.stopped.kind !== "interrupted") {
    log(`poll: stopped: ${result.stopped.message ?? result.stopped.kind}; trying again later`, "warn");
    return;
  }
  // Predictions still running on Replicate are polled again next round, without a line each time.
  if (result.items.every((item) => item.state === "pending" || item.state === "unchanged")) return;
  const failed = result.items.some((item) => isFailedState(item.state));
  log(`poll: rows stuck in starting/processing: ${result.summary}`, failed ? "warn" : "info");
  for (const item of result.items)
    if (item.message !== undefined) log(`poll: ${item.predictionId}: ${item.message}`, "warn");
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}
