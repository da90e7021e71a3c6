import { randomBytes } from "node:crypto";
import pLimit from "p-limit";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { mergeGeneration, type Delivery, type OutputProblem, type StorageKeyEntry } from "../core/generation-merge.ts";
import { planIngest, type ExistingRow, type IngestPlan, type PlannedObject } from "../core/ingest-plan.ts";
import { generationIdHint, userIdHints, type Prediction } from "../core/prediction.ts";
import { isFinal, type Status } from "../core/status.ts";
import { StorageError } from "../errors.ts";
import { IncompleteBodyError, ObjectExistsError } from "../storage/errors.ts";
import type { ObjectInfo } from "../storage/types.ts";
import { openDownload, sniffDownload, type Download, type DownloadPolicy } from "./download.ts";
import {
  IngestRefusedError,
  OutputConflictError,
  OutputError,
  OutputExpiredError,
  OutputUnavailableError,
} from "./errors.ts";
import type { GenerationRecord } from "../core/generation-table.ts";
import { findRow, idTaken, writeRow } from "../db/generations.ts";
import { makeThumbnail } from "./thumbnail.ts";
import type { IngestRequest, IngestResult, PipelineDeps, StoredObject } from "./types.ts";

// The one ingestion path (webhook worker, recover, polling, the library export):
//
//   1. find the row by replicateId (the webhook query's generationId may name a row that has
//      no prediction yet: it is adopted; it never moves a row that has one);
//   2. decide with planIngest (whose folder, which operation, which status, what to store);
//      dryRun stops here;
//   3. a prediction without a row that has outputs to store gets its row first, in
//      `processing`: from then on its id (and so its keys) is fixed, and a concurrent
//      delivery of the same prediction plans against that same row;
//   4. download and store each missing output, streaming (put with ifNoneMatch: an object
//      already at the key is compared by size and never overwritten), then its thumbnail;
//   5. write the row under the prediction's lock, merged with whatever the row holds by then
//      (mergeGeneration): status only moves forward, keys are a union.
//
// Outputs that can never be stored (expired, refused, too large, a different object at the
// key) are recorded on the row and the status becomes final anyway; expired ones are
// reported in the result, the others are thrown after the row is written. Failures that a
// later attempt may fix (network, 5xx, storage) leave the row in processing, with what was
// stored recorded, and are thrown (OutputError.retryable, or a StorageError/DatabaseError).

/** Outputs of one prediction downloaded at once. */
const OUTPUT_CONCURRENCY = 3;

export async function ingestPrediction(deps: PipelineDeps, request: IngestRequest): Promise<IngestResult> {
  const located = await locateRow(deps, request);
  let { row, plan } = located;
  const { warnings, adoptId, placement } = located;
  if (request.dryRun) return dryRunResult(request.prediction, plan, warnings);
  const ctx: Context = { deps, request, policy: downloadPolicy(deps), placement };
  const target = { replicateId: request.prediction.id, adoptId, newId: plan.id };

  let created = false;
  let changed = false;
  if (plan.toStore.length > 0 && (row === null || row.replicateId === null)) {
    // The row first (in processing), so that its id, and so every key, is fixed before any upload.
    const claim = await writeRow(deps.db, target, (current) =>
      current !== null && current.replicateId !== null
        ? null
        : mergeGeneration(current, deliveryOf(ctx, plan, { status: "processing" })),
    );
    ({ created, changed, row } = claim);
    plan = mustPlan(request, row, located.newId);
  }

  const outputs = await storeOutputs(ctx, plan);
  warnings.push(...outputs.warnings);
  const delivery = deliveryOf(ctx, plan, outputs.run);
  // A delivery that changes nothing (a duplicate, a stale one) skips the lock altogether.
  if (row === null || outputs.touched || mergeGeneration(row, delivery) !== null) {
    const write = await writeRow(deps.db, target, (current) => mergeGeneration(current, delivery));
    created ||= write.created;
    changed ||= write.changed;
    row = write.row;
  }

  // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what a storage or download call threw
  if (outputs.failure !== undefined) throw outputs.failure;
  if (outputs.lasting !== undefined) throw outputs.lasting;
  return {
    predictionId: request.prediction.id,
    generationId: row.id,
    userId: row.userId,
    status: row.status as Status,
    outcome: created ? "created" : changed ? "updated" : "unchanged",
    stored: outputs.written,
    alreadyStored: [...plan.alreadyStored.map((a) => a.key), ...outputs.found],
    expired: outputs.expired,
    warnings,
    dryRun: false,
  };
}

/** Step 1-2: the row (by replicateId, or the query's generationId for a row without a prediction) and the plan. */
async function locateRow(deps: PipelineDeps, request: IngestRequest) {
  const { prediction } = request;
  const warnings: string[] = [];
  const idHint = generationIdHint(request.query ?? {});
  if (idHint && !idHint.accepted)
    warnings.push(`Ignored the webhook query's generationId ${JSON.stringify(idHint.value)}: it ${idHint.reason}.`);
  let queryId = idHint?.accepted ? idHint.generationId : null;

  const { row } = await findRow(deps.db, await deps.db.generations(), prediction.id, queryId);
  if (queryId !== null && row === null && (await idTaken(deps.db, queryId))) {
    warnings.push(`Ignored the webhook query's generationId ${queryId}: that row belongs to another prediction.`);
    queryId = null;
  }
  const newId = row === null && queryId !== null ? queryId : newGenerationId();
  const plan = mustPlan(request, row, newId);
  warnings.push(
    ...plan.warnings,
    ...plan.ignoredHints.map((h) => `Ignored ${h.hint.source} ${h.hint.field}: ${h.why}.`),
  );
  return {
    row,
    plan,
    newId,
    warnings,
    adoptId: row === null || row.replicateId === null ? queryId : null,
    placement: placementOf(plan, queryId !== null && queryId === plan.id),
  };
}

interface OutputsRun {
  run: Parameters<typeof deliveryOf>[2];
  /** Anything to record (stored, found, failed): the row must be written. */
  touched: boolean;
  written: StoredObject[];
  /** Keys found already in storage (a concurrent or crashed earlier delivery stored them). */
  found: string[];
  expired: IngestResult["expired"];
  warnings: string[];
  /** The first retryable failure: thrown after the row is written. */
  failure?: unknown;
  /** The first lasting problem other than an expired output: thrown after the row is written. */
  lasting?: OutputError;
}

/** Step 4: every planned output (and thumbnail), a few at a time; per-output failures are collected. */
async function storeOutputs(ctx: Context, plan: IngestPlan): Promise<OutputsRun> {
  const limit = pLimit(OUTPUT_CONCURRENCY);
  const outcomes = await Promise.all(plan.toStore.map((item) => limit(() => storeOutput(ctx, item))));
  const stored = outcomes.flatMap((o) => o.entries);
  const problems = outcomes.flatMap((o) => (o.problem ? [o.problem] : []));
  const failures = outcomes.flatMap((o) => (o.failure !== undefined ? [o.failure] : []));
  const expired = problems.filter((p) => p.problem === "expired");
  const warnings = outcomes.flatMap((o) => o.warnings);
  for (const p of expired)
    warnings.push(
      `Output ${p.index} of ${ctx.request.prediction.id} has expired (${p.url}): the row is kept and marked.`,
    );
  const succeeded = ctx.request.prediction.status === "succeeded";
  return {
    run: {
      // Outputs still to fetch keep the row short of succeeded, so it is retried (recover --pending).
      status: failures.length > 0 && succeeded ? "processing" : ctx.request.prediction.status,
      stored,
      storedIndexes: outcomes.filter((o) => o.outputPresent).map((o) => o.index),
      problems,
      retryError: failures.length > 0 ? `${describe(failures[0])} (will be retried)` : null,
    },
    touched: stored.length > 0 || problems.length > 0 || failures.length > 0,
    written: outcomes.flatMap((o) => o.written),
    found: outcomes.flatMap((o) => o.entries.filter((e) => !o.written.some((w) => w.key === e.key)).map((e) => e.key)),
    expired: expired.map((p) => ({ index: p.index, url: p.url })),
    warnings,
    failure: failures[0],
    lasting: outcomes.find((o) => o.error !== undefined && o.problem?.problem !== "expired")?.error,
  };
}

export interface Context {
  deps: PipelineDeps;
  request: IngestRequest;
  policy: DownloadPolicy;
  placement: Record<string, unknown>;
}

export function downloadPolicy(deps: PipelineDeps): DownloadPolicy {
  return { ...deps.download, allowedHosts: deps.config.outputHosts, maxBytes: deps.config.maxOutputBytes };
}

/** planIngest, or the refusal as an IngestRefusedError (exit code refused). */
function mustPlan(request: IngestRequest, row: GenerationRecord | null, newId: string): IngestPlan {
  const { prediction } = request;
  const missing = new Set(request.missingKeys ?? []);
  const storageKeys = (row?.storageKeys ?? []) as ExistingRow["storageKeys"];
  const plan = planIngest({
    prediction,
    row: row && {
      ...row,
      storageKeys: missing.size > 0 ? storageKeys.filter((entry) => !missing.has(entry?.key)) : storageKeys,
    },
    hints: userIdHints(prediction, request.query ?? {}),
    fallbackUserId: request.user ?? null,
    newId,
  });
  if (!plan.ok) throw new IngestRefusedError(prediction.id, plan.reason.replace(/^prediction \S+ /, ""));
  return plan;
}

/** Where the row's owner and id came from: written only when the row is created or adopted. */
export function placementOf(plan: IngestPlan, idFromQuery: boolean): Record<string, unknown> {
  return { userIdSource: plan.userIdSource, ...(idFromQuery ? { generationIdSource: "webhook-query" } : {}) };
}

/** What one run of a prediction brings to its row (mergeGeneration's input). */
export function deliveryOf(
  ctx: Context,
  plan: IngestPlan,
  run: {
    status: Status;
    stored?: StorageKeyEntry[];
    storedIndexes?: number[];
    problems?: OutputProblem[];
    retryError?: string | null;
  },
): Delivery {
  const p = ctx.request.prediction;
  const final = isFinal(run.status);
  return {
    replicateId: p.id,
    status: run.status,
    predictionStatus: p.status,
    userId: plan.userId,
    prompt: plan.prompt,
    detection: plan.detection,
    outputUrls: plan.outputUrls,
    storedIndexes: run.storedIndexes ?? [],
    stored: run.stored ?? [],
    storage: { provider: ctx.deps.storage.provider, bucket: ctx.deps.storage.bucket },
    predictionError: plan.error,
    problems: run.problems ?? [],
    retryError: run.retryError ?? null,
    completedAt: final ? dateOr(p.completed_at, new Date()) : null,
    facts: {
      model: p.model,
      version: p.version ?? undefined,
      metrics: p.metrics ?? undefined,
      replicate: {
        status: p.status,
        createdAt: p.created_at ?? null,
        startedAt: p.started_at ?? null,
        completedAt: p.completed_at ?? null,
      },
      arrivedVia: ctx.request.via,
      ...(p.data_removed === true ? { dataRemoved: true } : {}),
    },
    placement: ctx.placement,
  };
}

// --- One output -----------------------------------------------------------------------

interface OutputOutcome {
  index: number;
  /** Storage entries for the row: the output (stored now or found there) and its thumbnail. */
  entries: StorageKeyEntry[];
  /** What this run wrote. */
  written: StoredObject[];
  /** The output object is in storage at its key (so any old problem with it is over). */
  outputPresent: boolean;
  problem?: OutputProblem;
  error?: OutputError;
  /** Retryable: the row stays in processing and the error is thrown. */
  failure?: unknown;
  warnings: string[];
}

async function storeOutput(ctx: Context, item: PlannedObject): Promise<OutputOutcome> {
  const out: OutputOutcome = {
    index: item.index,
    entries: [],
    written: [],
    outputPresent: item.outputStored,
    warnings: [],
  };
  try {
    if (!item.outputStored) {
      const copied = await copyOutputOnce(ctx, item, out);
      out.entries.push(copied.entry);
      out.outputPresent = true;
      if (copied.written) out.written.push(storedObject(item.index, copied.entry));
    }
    if (item.thumbnailKey !== null) await addThumbnail(ctx, item, out);
  } catch (error) {
    if (error instanceof OutputError && !error.retryable) {
      out.problem = {
        index: item.index,
        url: item.url,
        problem: error.problem as OutputProblem["problem"],
        message: error.message,
      };
      out.error = error;
    } else {
      out.failure = error;
    }
  }
  return out;
}

// Replicate sends several deliveries per prediction (and retries them), often at once: in
// one process they share one download per output. The copy in progress (or finished in the
// last minute) is reused when the object it wrote is still at its key with its size;
// otherwise (another process, a deleted object) the output is copied and checked as usual.
const REUSE_COPY_MS = 60_000;
const recentCopies = new Map<string, Promise<{ entry: StorageKeyEntry; written: boolean }>>();

async function copyOutputOnce(
  ctx: Context,
  item: PlannedObject,
  out: OutputOutcome,
): Promise<{ entry: StorageKeyEntry; written: boolean }> {
  const id = [ctx.deps.storage.provider, ctx.deps.storage.bucket, item.key, item.url].join("\0");
  const earlier = recentCopies.get(id);
  if (earlier) {
    const copied = await earlier.catch(() => undefined);
    const present = copied && (await ctx.deps.storage.head(item.key));
    if (copied && present && present.size === copied.entry.size) return { entry: copied.entry, written: false };
  }
  const copy = copyOutput(ctx, item, out);
  recentCopies.set(id, copy);
  copy.then(
    () => setTimeout(() => recentCopies.get(id) === copy && recentCopies.delete(id), REUSE_COPY_MS).unref(),
    () => recentCopies.get(id) === copy && recentCopies.delete(id),
  );
  return copy;
}

/** Downloads one output into its key; an object already there is kept, and compared by size. */
async function copyOutput(
  ctx: Context,
  item: PlannedObject,
  out: OutputOutcome,
): Promise<{ entry: StorageKeyEntry; written: boolean }> {
  const { storage, signal } = ctx.deps;
  const existing = await storage.head(item.key);
  let download: Download;
  try {
    download = await openDownload(item.url, ctx.policy, signal);
  } catch (error) {
    if (existing && error instanceof OutputExpiredError) {
      out.warnings.push(
        `Kept ${item.key} as output ${item.index}: its source has expired, so its size could not be compared.`,
      );
      return { entry: outputEntry(existing, item), written: false };
    }
    throw error;
  }
  if (existing) return { entry: await sameObjectOrConflict(item, existing, download), written: false };
  // The bytes decide the type, not the server's Content-Type; bytes that are no media are refused.
  const { contentType } = await sniffDownload(download);
  try {
    const info = await storage.put(item.key, download.body, {
      contentLength: download.contentLength ?? undefined,
      contentType,
      ifNoneMatch: true,
      signal,
    });
    return { entry: outputEntry({ ...info, contentType }, item), written: true };
  } catch (error) {
    if (error instanceof IncompleteBodyError) {
      throw new OutputUnavailableError(
        item.url,
        `the body had ${error.received} bytes instead of the ${error.expected} announced`,
        error,
      );
    }
    if (!(error instanceof ObjectExistsError)) throw error;
    // A concurrent delivery stored it first.
    const winner = await storage.head(item.key);
    if (!winner) throw error;
    if (download.contentLength !== null && download.contentLength !== winner.size) {
      throw new OutputConflictError(item.url, item.key, winner.size, download.contentLength);
    }
    return { entry: outputEntry(winner, item), written: false };
  }
}

/** An object already at the key is the same output when it has the download's size; it is never replaced. */
async function sameObjectOrConflict(
  item: PlannedObject,
  existing: ObjectInfo,
  download: Download,
): Promise<StorageKeyEntry> {
  let size = download.contentLength;
  if (size === null) size = await countBytes(download);
  else download.body.destroy();
  if (size !== existing.size) throw new OutputConflictError(item.url, item.key, existing.size, size);
  return outputEntry(existing, item);
}

async function countBytes(download: Download): Promise<number> {
  let size = 0;
  await pipeline(
    download.body,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        callback();
      },
    }),
  );
  return size;
}

async function addThumbnail(ctx: Context, item: PlannedObject, out: OutputOutcome): Promise<void> {
  try {
    const thumb = await makeThumbnail(ctx.deps.storage, item.key, item.thumbnailKey!, ctx.deps.signal);
    out.entries.push(thumb.entry);
    if (thumb.written) out.written.push(storedObject(item.index, thumb.entry));
  } catch (error) {
    // Storage failing is a failure for now, like an output's: the row stays short of succeeded
    // and the delivery is retried, so the thumbnail is made once storage is back. An image
    // that cannot be decoded never will be: a warning, and the output stands without one.
    if (ctx.deps.signal?.aborted || error instanceof StorageError) throw error;
    out.warnings.push(`No thumbnail for ${item.key}: ${describe(error)}.`);
  }
}

function outputEntry(info: ObjectInfo, item: PlannedObject): StorageKeyEntry {
  return {
    key: item.key,
    size: info.size,
    contentType: info.contentType ?? item.contentType,
    etag: info.etag,
    kind: "output",
  };
}

function storedObject(index: number, entry: StorageKeyEntry): StoredObject {
  return {
    index,
    key: entry.key,
    size: entry.size,
    contentType: entry.contentType,
    etag: entry.etag,
    kind: entry.kind,
  };
}

// --- Dry run, helpers ---------------------------------------------------------------------

function dryRunResult(prediction: Prediction, plan: IngestPlan, warnings: string[]): IngestResult {
  const changes = plan.isNew || plan.transition.apply || plan.toStore.length > 0;
  return {
    predictionId: prediction.id,
    generationId: plan.id,
    userId: plan.userId,
    status: plan.status,
    outcome: plan.isNew ? "created" : changes ? "updated" : "unchanged",
    stored: [],
    alreadyStored: plan.alreadyStored.map((a) => a.key),
    expired: [],
    warnings,
    dryRun: true,
    planned: plan.toStore.flatMap((item) => [
      ...(item.outputStored ? [] : [{ index: item.index, key: item.key, kind: "output" as const, url: item.url }]),
      ...(item.thumbnailKey !== null
        ? [{ index: item.index, key: item.thumbnailKey, kind: "thumbnail" as const, url: item.url }]
        : []),
    ]),
  };
}

/** A new row's id when the query names none: cuid-like (a letter, then time and randomness in base 36). */
export function newGenerationId(): string {
  return `c${Date.now().toString(36)}${randomBytes(10).toString("hex").slice(0, 16)}`;
}

function dateOr(value: string | null | undefined, fallback: Date): Date {
  const parsed = value ? new Date(value) : undefined;
  return parsed && !Number.isNaN(parsed.getTime()) ? parsed : fallback;
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split("\n")[0] ?? text).replace(/\.$/, "");
}
