// How one delivery of a prediction changes its Generation row, as plain data. The pipeline
// calls mergeGeneration under a per-prediction lock with the row as it is at that moment,
// so duplicate, concurrent and out-of-order deliveries all meet here:
//   - status moves only as nextStatus allows (a final status is never replaced);
//   - storageKeys is a union by key (an entry already listed is kept as it is);
//   - Replicate's facts (model, version, metrics, timestamps, arrivedVia) are written by the
//     delivery that moves the status, so a stale delivery cannot roll them back;
//   - outputs that could not be stored for good (expired, refused, conflict) are listed in
//     metadata and summed up in `error`; an output stored later leaves those lists.
// Nothing changes (null) when a delivery adds nothing: the row is not written at all.
import type { Detection } from "./operation.ts";
import { isFinal, isStatus, nextStatus, type Status } from "./status.ts";

export interface StorageKeyEntry {
  key: string;
  size: number;
  contentType: string | null;
  etag: string;
  kind: "output" | "thumbnail";
}

/** The fields of a Generation row this merge reads and writes. */
export interface GenerationState {
  userId: string;
  prompt: string;
  status: string | null;
  replicateId: string | null;
  imageUrls: string[];
  storageProvider: string | null;
  storageBucket: string | null;
  storageKeys: unknown[];
  operationType: string | null;
  storageContext: string | null;
  metadata: unknown;
  completedAt: Date | null;
  error: string | null;
}

export type OutputProblemKind = "expired" | "refused" | "too-large" | "rejected" | "conflict" | "not-media";

/** An output that cannot be stored, whatever the next attempt does. */
export interface OutputProblem {
  index: number;
  url: string;
  problem: OutputProblemKind;
  message: string;
}

export interface Delivery {
  replicateId: string;
  /** The status this delivery moves toward: the prediction's, or processing while outputs are still to be fetched. */
  status: Status;
  /** The prediction's own status (recorded as Replicate's in metadata). */
  predictionStatus: Status;
  userId: string;
  prompt: string;
  detection: Detection;
  /** Output URLs, when the prediction succeeded. */
  outputUrls: string[];
  /** Output indexes this run stored or found stored (they leave the problem lists). */
  storedIndexes: number[];
  stored: StorageKeyEntry[];
  storage: { provider: string; bucket: string };
  /** Error text of a failed, canceled or aborted prediction. */
  predictionError: string | null;
  /** Outputs that failed for good in this run. */
  problems: OutputProblem[];
  /** A retryable failure that keeps the status short of succeeded, recorded in `error`. */
  retryError: string | null;
  /** Replicate's completed_at (or the time of this run): written when the status becomes final. */
  completedAt: Date | null;
  /** Replicate's facts and how this delivery arrived, merged into metadata when it moves the status. */
  facts: Record<string, unknown>;
  /** Only written when the row is created or adopted (userIdSource). */
  placement: Record<string, unknown>;
}

export type GenerationWrite = Partial<GenerationState>;

const FAILED: readonly string[] = ["failed", "canceled", "aborted"];

/** The fields to write, or null when this delivery changes nothing. `current` null: a new row. */
export function mergeGeneration(current: GenerationState | null, delivery: Delivery): GenerationWrite | null {
  const currentStatus = current && isStatus(current.status) ? current.status : null;
  const transition = nextStatus(currentStatus, delivery.status, {
    current: replicateCompletedAt(current?.metadata),
    incoming: replicateCompletedAt(delivery.facts),
  });
  const status = transition.status;
  const keys = mergeStorageKeys(current?.storageKeys ?? [], delivery.stored);
  const metadata = asObject(current?.metadata);

  const problems = mergeProblems(metadata, delivery);
  const next: GenerationState = {
    userId: current?.userId ?? delivery.userId,
    prompt: current?.prompt ?? delivery.prompt,
    status,
    replicateId: delivery.replicateId,
    imageUrls:
      status === "succeeded" && delivery.predictionStatus === "succeeded" && delivery.outputUrls.length > 0
        ? delivery.outputUrls
        : (current?.imageUrls ?? []),
    storageProvider: delivery.stored.length > 0 ? delivery.storage.provider : (current?.storageProvider ?? null),
    storageBucket: delivery.stored.length > 0 ? delivery.storage.bucket : (current?.storageBucket ?? null),
    storageKeys: keys,
    operationType: current?.operationType ?? delivery.detection.operationType,
    storageContext: current?.storageContext ?? delivery.detection.storageContext,
    metadata: {
      ...metadata,
      ...(current === null || current.replicateId === null ? delivery.placement : {}),
      ...(current === null || transition.apply ? delivery.facts : {}),
      ...(typeof metadata["detectedBy"] === "string" ? {} : { detectedBy: delivery.detection.detectedBy }),
      ...problems,
    },
    completedAt:
      isFinal(status) && (current === null || transition.apply) ? delivery.completedAt : (current?.completedAt ?? null),
    error: errorFor(current, status, transition.apply, delivery, problems),
  };
  for (const key of Object.keys(next.metadata as object)) {
    if ((next.metadata as Record<string, unknown>)[key] === undefined)
      delete (next.metadata as Record<string, unknown>)[key];
  }
  if (current === null) return next;
  const write: GenerationWrite = {};
  for (const field of Object.keys(next) as Array<keyof GenerationState>) {
    if (!sameValue(current[field], next[field])) (write as Record<string, unknown>)[field] = next[field];
  }
  return Object.keys(write).length === 0 ? null : write;
}

/** Union by key, existing entries first and unchanged; entries without a key are kept. */
export function mergeStorageKeys(existing: readonly unknown[], added: readonly StorageKeyEntry[]): unknown[] {
  const present = new Set(existing.map((entry) => keyOf(entry)).filter((k): k is string => k !== undefined));
  const result = [...existing];
  for (const entry of added) {
    if (present.has(entry.key)) continue;
    present.add(entry.key);
    result.push({ ...entry });
  }
  return result;
}

function keyOf(entry: unknown): string | undefined {
  const key = (entry as { key?: unknown } | null)?.key;
  return typeof key === "string" ? key : undefined;
}

type ProblemLists = { expiredOutputs?: OutputProblem[] | undefined; failedOutputs?: OutputProblem[] | undefined };

/** metadata.expiredOutputs and metadata.failedOutputs after this delivery (undefined: none). */
function mergeProblems(metadata: Record<string, unknown>, delivery: Delivery): ProblemLists {
  const previous = [...listOf(metadata["expiredOutputs"]), ...listOf(metadata["failedOutputs"])];
  const byIndex = new Map<number, OutputProblem>();
  for (const p of previous) byIndex.set(p.index, p);
  for (const index of delivery.storedIndexes) byIndex.delete(index);
  for (const p of delivery.problems) byIndex.set(p.index, p);
  const all = [...byIndex.values()].sort((a, b) => a.index - b.index);
  const expired = all.filter((p) => p.problem === "expired");
  const failed = all.filter((p) => p.problem !== "expired");
  return {
    expiredOutputs: expired.length > 0 ? expired : undefined,
    failedOutputs: failed.length > 0 ? failed : undefined,
  };
}

function listOf(value: unknown): OutputProblem[] {
  return Array.isArray(value)
    ? value.filter((p): p is OutputProblem => typeof (p as OutputProblem)?.index === "number")
    : [];
}

function errorFor(
  current: GenerationState | null,
  status: Status,
  applied: boolean,
  delivery: Delivery,
  problems: ProblemLists,
): string | null {
  if (FAILED.includes(status)) {
    return current !== null && !applied ? current.error : (delivery.predictionError ?? `prediction ${status}`);
  }
  const lasting = [...(problems.expiredOutputs ?? []), ...(problems.failedOutputs ?? [])];
  if (lasting.length > 0) return summarizeProblems(lasting);
  if (delivery.retryError !== null) return delivery.retryError;
  return status === "succeeded" ? null : (current?.error ?? null);
}

/** The row's `error` for outputs that could not be stored: one line. */
export function summarizeProblems(problems: readonly OutputProblem[]): string {
  const expired = problems.filter((p) => p.problem === "expired").map((p) => p.index);
  const other = problems.filter((p) => p.problem !== "expired");
  const parts: string[] = [];
  if (expired.length > 0) {
    parts.push(
      `output${expired.length > 1 ? "s" : ""} ${expired.join(", ")} expired before ${expired.length > 1 ? "they were" : "it was"} stored (the file is gone)`,
    );
  }
  for (const p of other) parts.push(`output ${p.index} not stored: ${p.message}`);
  return parts.join("; ");
}

/** Replicate's completed_at as recorded in metadata (or carried by a delivery's facts). */
function replicateCompletedAt(facts: unknown): Date | null {
  const value = asObject(asObject(facts)["replicate"])["completedAt"];
  const date = typeof value === "string" ? new Date(value) : null;
  return date && !Number.isNaN(date.getTime()) ? date : null;
}

function asObject(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? { ...(value as Record<string, unknown>) }
    : {};
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a instanceof Date || b instanceof Date)
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  return stableJson(a) === stableJson(b);
}

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

/** A delivery the queue gave up on (its retry window passed while a retryable failure lasted). */
export interface GivenUpDelivery {
  webhookId: string;
  attempts: number;
  /** Why it was given up: "its retry window ended at …". */
  reason: string;
  /** The last attempt's error. */
  lastError: string;
  at: Date;
}

/**
 * What a given-up delivery writes on its prediction's row, so that the row says why it has no
 * outputs: `error` and metadata.deliveryGivenUp. Null when the row reached a final status
 * meanwhile (another delivery or a poll finished it): nothing to explain then.
 */
export function givenUpWrite(current: GenerationState, givenUp: GivenUpDelivery): GenerationWrite | null {
  if (isFinal(current.status)) return null;
  const metadata = asObject(current.metadata);
  return {
    error: `not stored: webhook delivery ${givenUp.webhookId} given up after ${givenUp.attempts} attempts, ${givenUp.reason}; last error: ${givenUp.lastError}`,
    metadata: {
      ...metadata,
      deliveryGivenUp: {
        webhookId: givenUp.webhookId,
        attempts: givenUp.attempts,
        reason: givenUp.reason,
        lastError: givenUp.lastError,
        at: givenUp.at.toISOString(),
      },
    },
  };
}
