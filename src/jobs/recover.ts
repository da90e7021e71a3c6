import { userIdHints, type Prediction } from "../core/prediction.ts";
import {
  needsAnotherPoll,
  predictionIdProblem,
  recoverExitCode,
  recoverSummaryLine,
  splitOrphans,
  type ItemState,
  type StopReason,
} from "../core/recover-plan.ts";
import { unsafeSegmentReason } from "../core/ids.ts";
import type { Status } from "../core/status.ts";
import { setTimeout as sleepFor } from "node:timers/promises";
import pLimit from "p-limit";
import { DatabaseError, describeError, ExitCode, StorageError, UserError } from "../errors.ts";
import { IngestRefusedError, OutputExpiredError } from "../pipeline/errors.ts";
import type { Arrival, IngestFunction, IngestResult, PipelineDeps } from "../pipeline/types.ts";
import type { ReplicateApi } from "../replicate/client.ts";
import { ReplicateError } from "../replicate/errors.ts";
import { knownPredictions, runningPredictions } from "../db/generations.ts";
import { isStorageOutage } from "../storage/errors.ts";

// `genstore recover`: fetch predictions from Replicate and put each through the one
// ingestion pipeline. Three ways to choose them: ids given by the operator, every row still
// starting/processing (--pending, the polling fallback), or what Replicate listed since a
// date that the database lacks (--since, orphans). Never prints or exits: it returns a
// result and reports progress through callbacks; the command renders.

export interface RecoverInput {
  ids?: string[];
  pending?: boolean;
  /** With pending: only rows that nothing has written for this long (serve-webhook's poll for stuck rows). */
  untouchedForMs?: number;
  since?: Date;
  /** Keep polling predictions that are not final yet, every intervalMs, until all are. */
  watch?: boolean;
  intervalMs?: number;
  dryRun?: boolean;
  /** The owner of orphans that carry no userId in their input. */
  user?: string;
  concurrency?: number;
}

export interface RecoverDeps {
  replicate: ReplicateApi;
  ingest: IngestFunction;
  /** db, storage, download policy; its signal is the run's signal. */
  pipeline: PipelineDeps;
  signal?: AbortSignal;
  onEvent?: (event: RecoverEvent) => void;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export type RecoverMode = "ids" | "pending" | "since";

export type RecoverEvent =
  | { type: "start"; mode: RecoverMode; total?: number; withoutReplicateId?: number }
  | { type: "listed"; listed: number; orphans: number }
  | { type: "item"; item: RecoverItem; done: number; total: number }
  | { type: "waiting"; round: number; pending: number; intervalMs: number };

export interface RecoverItem {
  predictionId: string;
  via: Arrival;
  state: ItemState;
  /** Replicate's status of the prediction, when it was read. */
  status?: Status;
  /** The row's status after the run (what ingest reported). */
  rowStatus?: Status;
  generationId?: string;
  userId?: string;
  outcome?: IngestResult["outcome"];
  /** Keys written by this run. */
  stored: string[];
  /** --dry-run: keys a real run would write. */
  planned: string[];
  alreadyStored: string[];
  expired: Array<{ index: number; url: string }>;
  warnings: string[];
  /** The one-line reason for a failed or skipped item. */
  message?: string;
  hint?: string;
  /** How many times it was fetched from Replicate in this run. */
  fetches: number;
}

export interface RecoverResult {
  mode: RecoverMode;
  dryRun: boolean;
  items: RecoverItem[];
  /** --since: predictions Replicate listed in the window, and how many the database already had. */
  listed?: number;
  present?: number;
  /** --pending: rows starting/processing without a replicateId (nothing to poll them by). */
  withoutReplicateId?: number;
  /** --watch: polling rounds made after the first pass. */
  rounds: number;
  stopped?: StopReason;
  exitCode: number;
  summary: string;
  durationMs: number;
}

export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_INTERVAL_MS = 5_000;

interface Target {
  id: string;
  via: Arrival;
  /** Already fetched (listed by --since); fetched again on later polls. */
  prediction?: Prediction;
  orphan?: boolean;
}

export async function runRecover(input: RecoverInput, deps: RecoverDeps): Promise<RecoverResult> {
  const startedAt = Date.now();
  const mode = checkRecoverInput(input);
  const dryRun = input.dryRun === true;
  const limit = pLimit(input.concurrency ?? DEFAULT_CONCURRENCY);
  const signal = deps.signal ?? deps.pipeline.signal;
  const sleep = deps.sleep ?? ((ms: number, signal?: AbortSignal) => sleepFor(ms, undefined, { signal }));
  const emit = deps.onEvent ?? (() => {});

  const items = new Map<string, RecoverItem>();
  let stopped: StopReason | undefined;
  let done = 0;
  let total = 0;
  const halted = () => stopped !== undefined || signal?.aborted === true;

  /** Fetches (unless given), ingests, and records one prediction; never throws. */
  const recoverOne = async (target: Target): Promise<void> => {
    const item = items.get(target.id) ?? blankItem(target.id, target.via);
    items.set(target.id, item);
    item.via = target.via;
    try {
      // Ids from rows or from a listing are checked like the operator's: never put in a URL unchecked.
      const problem = predictionIdProblem(target.id);
      if (problem)
        return setFailure(
          item,
          "refused",
          `Refusing prediction id ${JSON.stringify(target.id)}: it ${problem}; nothing was fetched.`,
          "Fix the row's replicateId.",
        );
      let prediction = target.prediction;
      target.prediction = undefined;
      if (!prediction) {
        prediction = await deps.replicate.getPrediction(target.id, { signal });
        item.fetches += 1;
      }
      item.status = prediction.status;
      if (target.orphan) {
        const refusal = orphanRefusal(prediction, input.user);
        if (refusal)
          return setFailure(
            item,
            "refused",
            refusal,
            "Pass --user <userId> to place predictions that carry no user_id/userId in their input.",
          );
      }
      const result = await deps.ingest(deps.pipeline, { prediction, via: target.via, user: input.user, dryRun });
      applyResult(item, prediction, result);
    } catch (error) {
      if (signal?.aborted) {
        stopped ??= { kind: "interrupted" };
        item.state = "skipped";
        item.message = "Interrupted before it finished.";
        return;
      }
      const verdict = classify(error);
      if (verdict.stop) {
        stopped ??= { kind: verdict.stop, message: verdict.message, hint: verdict.hint };
        item.state = "skipped";
        item.message = verdict.message;
        return;
      }
      setFailure(item, verdict.state, verdict.message, verdict.hint);
    } finally {
      done += 1;
      emit({ type: "item", item, done, total });
    }
  };

  const runAll = async (targets: Target[]) => {
    for (const t of targets) if (!items.has(t.id)) items.set(t.id, blankItem(t.id, t.via));
    total += targets.length;
    // Once the run is halted (Ctrl-C, or the API, database or storage became unusable), no new prediction starts.
    await Promise.all(targets.map((target) => limit(() => (halted() ? undefined : recoverOne(target)))));
  };

  let listed: number | undefined;
  let present: number | undefined;
  let withoutReplicateId: number | undefined;

  if (mode === "ids") {
    const ids = [...new Set(input.ids)];
    emit({ type: "start", mode, total: ids.length });
    await runAll(ids.map((id) => ({ id, via: "recover" as const })));
  } else if (mode === "pending") {
    const running = await runningPredictions(deps.pipeline.db, { untouchedForMs: input.untouchedForMs });
    const ids = running.predictionIds;
    withoutReplicateId = running.withoutPrediction;
    emit({ type: "start", mode, total: ids.length, withoutReplicateId });
    await runAll(ids.map((id) => ({ id, via: "poll" as const })));
  } else {
    emit({ type: "start", mode });
    listed = 0;
    present = 0;
    try {
      for await (const page of deps.replicate.listPredictionsSince(input.since!, { signal })) {
        const known = await knownPredictions(
          deps.pipeline.db,
          page.map((p) => p.id),
        );
        const split = splitOrphans(page, known);
        listed += page.length;
        present += split.present.length;
        emit({ type: "listed", listed, orphans: listed - present });
        await runAll(
          split.orphans.map((prediction) => ({ id: prediction.id, via: "recover" as const, prediction, orphan: true })),
        );
        if (halted()) break;
      }
    } catch (error) {
      if (signal?.aborted) stopped ??= { kind: "interrupted" };
      else {
        const verdict = classify(error);
        if (!verdict.stop) throw error;
        stopped ??= { kind: verdict.stop, message: verdict.message, hint: verdict.hint };
      }
    }
  }

  // --watch: poll what is still running until it is final, or the run is stopped.
  let rounds = 0;
  if (input.watch) {
    const intervalMs = input.intervalMs ?? DEFAULT_INTERVAL_MS;
    for (;;) {
      const waiting = [...items.values()].filter((i) => i.state === "pending");
      if (waiting.length === 0 || halted()) break;
      rounds += 1;
      emit({ type: "waiting", round: rounds, pending: waiting.length, intervalMs });
      try {
        await sleep(intervalMs, signal);
      } catch {
        stopped ??= { kind: "interrupted" };
        break;
      }
      await runAll(waiting.map((i) => ({ id: i.predictionId, via: "poll" as const })));
    }
  }
  if (signal?.aborted) stopped ??= { kind: "interrupted" };

  const list = [...items.values()];
  for (const item of list) {
    if (item.state === "skipped" && item.message === undefined) item.message = "Not attempted: the run stopped first.";
  }
  return {
    mode,
    dryRun,
    items: list,
    ...(listed !== undefined ? { listed, present } : {}),
    ...(withoutReplicateId !== undefined ? { withoutReplicateId } : {}),
    rounds,
    ...(stopped ? { stopped } : {}),
    exitCode: recoverExitCode(list, stopped),
    summary: recoverSummaryLine(list, { dryRun }),
    durationMs: Date.now() - startedAt,
  };
}

/** Refuses contradictory or unsafe input before anything is fetched. */
export function checkRecoverInput(input: RecoverInput): RecoverMode {
  const ids = input.ids ?? [];
  const chosen = [ids.length > 0 && "prediction ids", input.pending && "--pending", input.since && "--since"].filter(
    Boolean,
  );
  if (chosen.length === 0) {
    throw new UserError("Nothing to recover: give prediction ids, --pending or --since.", {
      hint: "See genstore recover --help for examples.",
    });
  }
  if (chosen.length > 1) {
    throw new UserError(`Choose one of prediction ids, --pending or --since (got ${chosen.join(" and ")}).`, {
      hint: "Run them as separate commands.",
    });
  }
  const bad = ids.map((id) => ({ id, problem: predictionIdProblem(id) })).filter((b) => b.problem !== undefined);
  if (bad.length > 0) {
    const first = bad[0]!;
    const more = bad.length > 1 ? ` (and ${bad.length - 1} more)` : "";
    throw new UserError(
      `Refusing prediction id ${JSON.stringify(first.id)}: it ${first.problem}${more}. Nothing was fetched.`,
      {
        hint: "Replicate prediction ids look like gm3qorzdhgbfurvjtvhg6dckhu.",
        exitCode: ExitCode.refused,
      },
    );
  }
  if (input.user !== undefined) {
    const reason = unsafeSegmentReason(input.user);
    if (reason) {
      throw new UserError(
        `Refusing --user ${JSON.stringify(input.user)}: it ${reason}, so it could escape its storage folder.`,
        { exitCode: ExitCode.refused },
      );
    }
  }
  if (input.concurrency !== undefined && (!Number.isInteger(input.concurrency) || input.concurrency < 1)) {
    throw new UserError(`Invalid concurrency: ${input.concurrency}.`, { hint: "Use a whole number of at least 1." });
  }
  return ids.length > 0 ? "ids" : input.pending ? "pending" : "since";
}

/** Why an orphan cannot be placed, or undefined when something says whose it is. */
function orphanRefusal(prediction: Prediction, user: string | undefined): string | undefined {
  if (user !== undefined) return undefined;
  const hints = userIdHints(prediction, {});
  if (hints.some((h) => h.accepted)) return undefined;
  const refused = hints.find((h) => !h.accepted);
  if (refused && !refused.accepted)
    return `Orphan ${prediction.id} has input.${refused.field} ${JSON.stringify(refused.value)}, which ${refused.reason}; nothing was stored.`;
  return `Orphan ${prediction.id} has no row and no user_id/userId in its input: nothing says whose it is; nothing was stored.`;
}

function applyResult(item: RecoverItem, prediction: Prediction, result: IngestResult): void {
  item.generationId = result.generationId;
  item.userId = result.userId;
  item.rowStatus = result.status;
  item.outcome = result.outcome;
  item.stored = result.stored.map((s) => s.key);
  item.planned = (result.planned ?? []).map((p) => p.key);
  item.alreadyStored = result.alreadyStored;
  item.expired = result.expired;
  item.warnings = result.warnings;
  item.message = undefined;
  item.hint = undefined;
  if (result.expired.length > 0) {
    const n = result.expired.length;
    item.state = "expired";
    item.message = `${n} output${n === 1 ? "" : "s"} of ${prediction.id} ${n === 1 ? "is" : "are"} gone (404/410: Replicate deletes API outputs about an hour after completion); the row is kept and marked.`;
    item.hint = "Run the prediction again on Replicate if the output is needed.";
  } else if (result.dryRun) item.state = result.outcome === "unchanged" ? "unchanged" : "planned";
  else if (needsAnotherPoll(prediction.status)) item.state = "pending";
  else item.state = result.outcome === "unchanged" ? "unchanged" : "stored";
}

function setFailure(item: RecoverItem, state: ItemState, message: string, hint?: string): void {
  item.state = state;
  item.message = message;
  item.hint = hint;
}

type Verdict =
  | { stop: "replicate" | "database" | "storage"; message: string; hint?: string }
  | { stop?: undefined; state: ItemState; message: string; hint?: string };

/** Which errors end the whole run (the API, database or storage is unusable) and which concern one prediction. */
function classify(error: unknown): Verdict {
  const { message, hint } = describeError(error);
  if (error instanceof ReplicateError) {
    if (error.kind === "unknown-prediction") return { state: "unknown", message, hint };
    if (error.kind === "rate-limited") return { state: "rate-limited", message, hint };
    if (error.kind === "bad-response") return { state: "failed", message, hint };
    return { stop: "replicate", message, hint };
  }
  if (error instanceof DatabaseError) return { stop: "database", message, hint };
  // A storage error about one object (already there, missing, a body cut short) concerns one prediction.
  if (isStorageOutage(error)) return { stop: "storage", message, hint };
  if (error instanceof StorageError) return { state: "failed", message, hint };
  if (error instanceof IngestRefusedError)
    return { state: "refused", message, hint: "Pass --user <userId> for predictions that name no user." };
  if (error instanceof OutputExpiredError) return { state: "expired", message, hint };
  return { state: "failed", message, hint };
}

function blankItem(predictionId: string, via: Arrival): RecoverItem {
  return {
    predictionId,
    via,
    state: "skipped",
    stored: [],
    planned: [],
    alreadyStored: [],
    expired: [],
    warnings: [],
    fetches: 0,
  };
}
