import {
  coveredBy,
  countFinding,
  emptySummary,
  FINDING_CLASSES,
  FINDING_KINDS,
  findingOfMerge,
  listingPrefixes,
  markLost,
  mergeKeys,
  problemCount,
  rowFindings,
  type DoctorScope,
  type ExpectedKey,
  type Finding,
  type FindingKind,
  type ListedObject,
} from "../core/doctor.ts";
import { mergeStorageKeys } from "../core/generation-merge.ts";
import { isImageExtension, parseContextKey, thumbnailKeyFor } from "../core/keys.ts";
import { storageEntryKey, storageEntryKind } from "../core/key-moves.ts";
import { resolveOperation } from "../core/operation.ts";
import type { Database } from "../db/client.ts";
import { countScope, keysListed, scanRows, scanStoredKeys, writeRowById } from "../db/generations.ts";
import { Interrupted } from "../errors.ts";
import { makeThumbnail } from "../pipeline/thumbnail.ts";
import type { IngestFunction, PipelineDeps } from "../pipeline/types.ts";
import type { ReplicateApi } from "../replicate/client.ts";
import type { Storage } from "../storage/types.ts";
import { createDeliveryQueue } from "../webhook/queue.ts";
import { runRecover, type RecoverItem } from "./recover.ts";
import { findGeneration } from "./list.ts";

// `genstore doctor`: compares the rows with the storage and reports what does not agree.
// Three passes, each streaming: the rows (what a row says about itself), the keys the rows
// list against the storage listing (a merge-join of two sorted streams: memory holds one
// item of each side), and the failed webhook deliveries. With --repair, what can be
// repaired is, through the same code as the other commands: the pipeline (as `recover`)
// for missing objects, never-stored rows and stuck rows, makeThumbnail for thumbnails, the
// row write path and its locks for records. Nothing is ever deleted or overwritten: a
// repair killed mid-way and run again finds what it added and records it.

export interface DoctorInput {
  scope: DoctorScope;
  stuckAfterMs: number;
  repair?: boolean;
  /** With repair: say what would be done, change nothing. */
  dryRun?: boolean;
  /** Record unreferenced objects on the generation their key names. */
  adopt?: boolean;
  /** Put failed webhook deliveries back in the queue. */
  retryFailed?: boolean;
  /** Predictions recovered at once. */
  concurrency?: number;
}

export interface DoctorDeps {
  db: Database;
  storage: Storage;
  /** The pipeline's dependencies (as recover's): its db and storage are the ones above. */
  pipeline: PipelineDeps;
  ingest: IngestFunction;
  /** Undefined without REPLICATE_API_TOKEN: repairs that need Replicate are then reported, not made. */
  replicate?: ReplicateApi;
  signal?: AbortSignal;
  now?: Date;
  onFinding?: (finding: Finding) => void;
  onRepair?: (outcome: RepairOutcome) => void;
  onProgress?: (progress: DoctorProgress) => void;
}

export type RepairState = "repaired" | "planned" | "lost" | "not-repaired";

export interface RepairOutcome {
  kind: FindingKind;
  state: RepairState;
  key?: string;
  generationId?: string;
  replicateId?: string | null;
  deliveryId?: string;
  detail: string;
}

export interface DoctorProgress {
  phase: "rows" | "objects" | "deliveries" | "repair";
  done: number;
  total?: number;
  startedAt: number;
}

export interface DoctorResult {
  scope: DoctorScope;
  rows: number;
  keys: number;
  objects: number;
  deliveries: number;
  counts: Record<FindingKind, number>;
  examples: Record<FindingKind, Finding[]>;
  repair: boolean;
  dryRun: boolean;
  /** Findings repaired by this run (with dryRun: that a real run would try to repair). */
  repaired: Record<FindingKind, number>;
  /** Findings recorded as lost by this run. */
  markedLost: number;
  /** Problems found and not repaired (the exit code's business). */
  remaining: number;
  notes: string[];
  durationMs: number;
}

/** Repairs held in memory at most; a scan with more repairs the first ones and says to run again. */
const MAX_REPAIRS = 100_000;
/** Unreferenced candidates of a narrowed scan, checked against every row at once. */
const CONFIRM_BATCH = 500;
const DELIVERY_PAGE = 500;

interface RecoverTarget {
  missingKeys: Set<string>;
  findings: Finding[];
}

export async function runDoctor(input: DoctorInput, deps: DoctorDeps): Promise<DoctorResult> {
  const startedAt = Date.now();
  const now = deps.now ?? new Date();
  const { db, storage, signal } = deps;
  const summary = emptySummary();
  const notes: string[] = [];
  const scope = input.scope;
  const narrowed = scope.userId !== undefined || scope.context !== undefined;
  const repairing = input.repair === true;

  // Repair work, gathered during the scan (problems are few; MAX_REPAIRS bounds them anyway).
  const recoverTargets = new Map<string, RecoverTarget>();
  const unrecoverable: Finding[] = [];
  const thumbnails: Finding[] = [];
  const unreferenced: Finding[] = [];
  const failedDeliveries: Finding[] = [];
  let gathered = 0;
  let overflow = false;

  const gather = (finding: Finding) => {
    if (!repairing) return;
    if (gathered >= MAX_REPAIRS) {
      overflow = true;
      return;
    }
    gathered += 1;
    switch (finding.kind) {
      case "missing-object":
      case "never-stored":
      case "stuck": {
        if (!finding.replicateId) return unrecoverable.push(finding);
        const target = recoverTargets.get(finding.replicateId) ?? { missingKeys: new Set<string>(), findings: [] };
        if (finding.kind === "missing-object" && finding.key) target.missingKeys.add(finding.key);
        target.findings.push(finding);
        recoverTargets.set(finding.replicateId, target);
        return;
      }
      case "missing-thumbnail":
        return thumbnails.push(finding);
      case "unreferenced-object":
        if (input.adopt) unreferenced.push(finding);
        return;
      case "failed-delivery":
        if (input.retryFailed) failedDeliveries.push(finding);
        return;
      default:
        return;
    }
  };
  const report = (finding: Finding) => {
    countFinding(summary, finding);
    deps.onFinding?.(finding);
    gather(finding);
  };
  const checkInterrupted = () => {
    if (signal?.aborted)
      throw new Interrupted(
        "Interrupted: doctor stopped before the end of its scan.",
        "Run it again: a scan changes nothing.",
      );
  };
  const progress = throttled(deps.onProgress);

  // The counts only give the progress line its total: on PostgreSQL they are counted while
  // the scan runs (a whole-table read before it, otherwise); the embedded database counts first.
  const totals: { rows?: number; keys?: number } = {};
  const counting = countScope(db, scope).then((counted) => Object.assign(totals, counted));
  counting.catch(() => {}); // awaited after the passes, which then throw it
  if (db.kind !== "postgres") await counting;

  // 1. The rows, one by one.
  const rowsPass = async () => {
    const rowsStarted = Date.now();
    for await (const batch of scanRows(db, scope)) {
      checkInterrupted();
      for (const row of batch) {
        summary.rows += 1;
        for (const finding of rowFindings(row, { now, stuckAfterMs: input.stuckAfterMs })) report(finding);
      }
      progress({ phase: "rows", done: summary.rows, total: totals.rows, startedAt: rowsStarted });
    }
  };

  // 2. The keys the rows list against the storage listing.
  const keysPass = async () => {
    const prefixes = listingPrefixes(scope);
    const objectsStarted = Date.now();
    async function* listed(): AsyncGenerator<ListedObject[]> {
      for (const prefix of prefixes) {
        for await (const page of storage.listPages(prefix, { etags: false })) {
          summary.objects += page.length;
          yield page;
        }
      }
    }
    async function* expected(): AsyncGenerator<ExpectedKey[]> {
      for await (const batch of scanStoredKeys(db, scope)) {
        checkInterrupted();
        summary.keys += batch.length;
        yield batch.map((r) => ({ ...r, kind: storageEntryKind({ key: r.key, kind: r.kind }) }));
        progress({ phase: "objects", done: summary.keys, total: totals.keys, startedAt: objectsStarted });
      }
    }
    const reportUnreferenced = scope.since === undefined;
    if (!reportUnreferenced)
      notes.push("Unreferenced objects are not looked for with --since (an object has no creation date to narrow by).");
    let candidates: Finding[] = [];
    const confirmCandidates = async () => {
      const listedSomewhere = await keysListed(
        db,
        candidates.map((c) => c.key!),
      );
      for (const candidate of candidates) if (!listedSomewhere.has(candidate.key!)) report(candidate);
      candidates = [];
    };
    for await (const events of mergeKeys(expected(), listed(), coveredBy(prefixes))) {
      for (const event of events) {
        if (event.type === "outside") {
          // A key outside the listed folders (a legacy key in a narrowed scan): asked for alone.
          const object = await storage.head(event.expected.key);
          const finding = findingOfMerge(
            object
              ? { type: "match", expected: event.expected, object: { key: object.key, size: object.size } }
              : { type: "missing", expected: event.expected },
          );
          if (finding) report(finding);
          continue;
        }
        const finding = findingOfMerge(event);
        if (finding === undefined) continue;
        if (finding.kind !== "unreferenced-object") report(finding);
        else if (!reportUnreferenced) continue;
        else if (!narrowed) report(finding);
        else {
          // A narrowed scan read only some rows: another row may list the object.
          candidates.push(finding);
          if (candidates.length >= CONFIRM_BATCH) await confirmCandidates();
        }
      }
    }
    if (candidates.length > 0) await confirmCandidates();
    progress({ phase: "objects", done: summary.keys, total: totals.keys, startedAt: objectsStarted }, true);
  };

  // On PostgreSQL the two passes read on connections of their own and overlap (the key
  // pass waits on the file system or S3 much of the time); the embedded database is one
  // connection, which one cursor at a time holds.
  if (db.kind === "postgres") {
    // Both end before an error is thrown: no cursor is left reading behind it.
    const passes = await Promise.allSettled([rowsPass(), keysPass(), counting]);
    for (const pass of passes) if (pass.status === "rejected") throw pass.reason;
  } else {
    await rowsPass();
    await keysPass();
  }

  // 3. Failed webhook deliveries.
  let deliveries = 0;
  if (narrowed) notes.push("Failed webhook deliveries are not looked for with --user or --context.");
  else {
    const queue = createDeliveryQueue(db);
    let after: string | undefined;
    for (;;) {
      checkInterrupted();
      const page = await queue.listFailed({ limit: DELIVERY_PAGE, after, since: scope.since });
      for (const delivery of page) {
        deliveries += 1;
        report({
          kind: "failed-delivery",
          deliveryId: delivery.id,
          replicateId: delivery.predictionId,
          detail: `failed after ${delivery.attempts} attempt${delivery.attempts === 1 ? "" : "s"}: ${delivery.lastError ?? "no error recorded"}`,
        });
      }
      if (page.length < DELIVERY_PAGE) break;
      after = page.at(-1)!.id;
    }
  }

  // 4. Repairs.
  const repaired = Object.fromEntries(FINDING_KINDS.map((k) => [k, 0])) as Record<FindingKind, number>;
  let markedLost = 0;
  if (repairing) {
    if (overflow)
      notes.push(
        `More than ${MAX_REPAIRS.toLocaleString("en-US")} findings to repair: the first ones were; run doctor --repair again for the rest.`,
      );
    const outcome = (finding: Finding, state: RepairState, detail: string) => {
      if (state === "repaired" || state === "planned" || state === "lost") repaired[finding.kind] += 1;
      if (state === "lost") markedLost += 1;
      deps.onRepair?.({
        kind: finding.kind,
        state,
        detail,
        ...(finding.key !== undefined ? { key: finding.key } : {}),
        ...(finding.generationId !== undefined ? { generationId: finding.generationId } : {}),
        ...(finding.replicateId !== undefined ? { replicateId: finding.replicateId } : {}),
        ...(finding.deliveryId !== undefined ? { deliveryId: finding.deliveryId } : {}),
      });
    };
    const repairContext: RepairContext = { input, deps, outcome, now };
    await repairThroughPipeline(repairContext, recoverTargets, unrecoverable);
    checkInterrupted();
    await repairThumbnails(repairContext, thumbnails);
    checkInterrupted();
    await adoptObjects(repairContext, unreferenced);
    if (failedDeliveries.length > 0) {
      if (input.dryRun) for (const f of failedDeliveries) outcome(f, "planned", "would be put back in the queue");
      else {
        await createDeliveryQueue(db).retryFailed(failedDeliveries.map((f) => f.deliveryId!));
        for (const f of failedDeliveries)
          outcome(f, "repaired", "back in the queue (pending): a running serve-webhook or the drain route takes it");
      }
    }
  }

  const found = problemCount(summary.counts);
  const fixed = FINDING_KINDS.filter((k) => FINDING_CLASSES[k].problem).reduce((n, k) => n + repaired[k], 0);
  return {
    scope,
    rows: summary.rows,
    keys: summary.keys,
    objects: summary.objects,
    deliveries,
    counts: summary.counts,
    examples: summary.examples,
    repair: repairing,
    dryRun: repairing && input.dryRun === true,
    repaired,
    markedLost,
    remaining: repairing && !input.dryRun ? found - fixed : found,
    notes,
    durationMs: Date.now() - startedAt,
  };
}

interface RepairContext {
  input: DoctorInput;
  deps: DoctorDeps;
  outcome: (finding: Finding, state: RepairState, detail: string) => void;
  now: Date;
}

/** Missing objects, never-stored and stuck rows: `recover` for their predictions, with the missing keys planned again. */
async function repairThroughPipeline(
  ctx: RepairContext,
  targets: Map<string, RecoverTarget>,
  unrecoverable: Finding[],
): Promise<void> {
  const { deps, input, outcome } = ctx;
  for (const finding of unrecoverable) {
    if (finding.kind === "missing-object" && finding.generationId && finding.key) {
      await recordLost(ctx, finding, "the row has no replicateId: nothing to recover it from");
    } else outcome(finding, "not-repaired", "the row has no replicateId: nothing to ask Replicate");
  }
  if (targets.size === 0) return;
  if (deps.replicate === undefined) {
    for (const target of targets.values())
      for (const finding of target.findings)
        outcome(finding, "not-repaired", "needs REPLICATE_API_TOKEN to ask Replicate for the prediction");
    return;
  }
  const result = await runRecover(
    { ids: [...targets.keys()], dryRun: input.dryRun, concurrency: input.concurrency },
    {
      replicate: deps.replicate,
      ingest: (pipeline, request) =>
        deps.ingest(pipeline, {
          ...request,
          missingKeys: [...(targets.get(request.prediction.id)?.missingKeys ?? [])],
        }),
      pipeline: deps.pipeline,
      signal: deps.signal,
    },
  );
  const items = new Map(result.items.map((item) => [item.predictionId, item]));
  for (const [predictionId, target] of targets) {
    const item = items.get(predictionId);
    for (const finding of target.findings) await settle(ctx, finding, item);
  }
  if (result.stopped?.kind === "interrupted")
    throw new Interrupted("Interrupted during the repairs.", "Run doctor --repair again: nothing is lost.");
}

/** What became of one finding whose prediction went through the pipeline. */
async function settle(ctx: RepairContext, finding: Finding, item: RecoverItem | undefined): Promise<void> {
  const { outcome, input, deps } = ctx;
  const why = item?.message ?? (item ? item.state : "not attempted");
  if (item === undefined || item.state === "skipped") return outcome(finding, "not-repaired", why);
  if (input.dryRun) {
    if (item.state === "planned")
      return outcome(
        finding,
        "planned",
        `would store ${item.planned.join(", ") || "nothing new"} through the pipeline`,
      );
    if (item.state === "unknown" && finding.kind === "missing-object")
      return outcome(finding, "planned", "Replicate has no such prediction: would be recorded as lost");
    return outcome(finding, "not-repaired", why);
  }
  if (finding.kind === "missing-object") {
    const present = await deps.storage.head(finding.key!);
    if (present) return outcome(finding, "repaired", `copied again from ${predictionOf(finding)}'s output`);
    if (item.state === "expired" || item.state === "unknown")
      return recordLost(
        ctx,
        finding,
        item.state === "expired" ? "Replicate's output has expired" : "Replicate has no such prediction",
      );
    return outcome(finding, "not-repaired", why);
  }
  if (finding.kind === "never-stored") {
    if (item.state === "stored" || item.state === "unchanged")
      return outcome(finding, "repaired", `stored: ${item.stored.join(", ") || item.alreadyStored.join(", ")}`);
    if (item.state === "expired")
      return outcome(finding, "lost", "its outputs expired before they were stored; the pipeline marked the row");
    return outcome(finding, "not-repaired", why);
  }
  // stuck
  if (item.state === "pending")
    return outcome(finding, "not-repaired", `still ${item.status ?? "running"} on Replicate; run again later`);
  if (item.state === "stored" || item.state === "unchanged" || item.state === "expired")
    return outcome(finding, "repaired", `now ${item.rowStatus ?? item.status ?? "final"}`);
  return outcome(finding, "not-repaired", why);
}

function predictionOf(finding: Finding): string {
  return finding.replicateId ?? "the prediction";
}

/** Records on the row (metadata.lostObjects) that an object is gone for good. */
async function recordLost(ctx: RepairContext, finding: Finding, reason: string): Promise<void> {
  if (ctx.input.dryRun) return ctx.outcome(finding, "planned", `would be recorded as lost (${reason})`);
  const lost = { key: finding.key!, kind: "output" as const, reason, at: ctx.now.toISOString() };
  const written = await writeRowById(ctx.deps.db, finding.generationId!, (row) => {
    const metadata = markLost(row.metadata, [lost]);
    return metadata === row.metadata || JSON.stringify(metadata) === JSON.stringify(row.metadata) ? null : { metadata };
  });
  if (written === null) return ctx.outcome(finding, "not-repaired", "the row is gone");
  ctx.outcome(finding, "lost", `recorded as lost on the row: ${reason}`);
}

/** Thumbnails made from the stored output (no download) and recorded on the row. */
async function repairThumbnails(ctx: RepairContext, findings: Finding[]): Promise<void> {
  const { deps, outcome } = ctx;
  const done = new Set<string>();
  for (const finding of findings) {
    const thumbnailKey = finding.thumbnailKey!;
    if (done.has(thumbnailKey)) {
      outcome(finding, ctx.input.dryRun ? "planned" : "repaired", "made with the other finding of this thumbnail");
      continue;
    }
    done.add(thumbnailKey);
    const row = await findGeneration(finding.generationId!, { db: deps.db });
    const wanted = parseContextKey(thumbnailKey);
    const outputKey = row?.storageKeys.map(storageEntryKey).find((key) => {
      const parsed = key === undefined ? undefined : parseContextKey(key);
      return (
        parsed?.kind === "output" &&
        parsed.context === wanted?.context &&
        parsed.userId === wanted.userId &&
        parsed.id === wanted.id &&
        parsed.index === wanted.index
      );
    });
    if (!row || outputKey === undefined) {
      outcome(finding, "not-repaired", "the row lists no output this thumbnail belongs to");
      continue;
    }
    if (!(await deps.storage.head(outputKey))) {
      outcome(finding, "not-repaired", `its output ${outputKey} is missing too`);
      continue;
    }
    if (ctx.input.dryRun) {
      outcome(finding, "planned", `would make ${thumbnailKey} from ${outputKey}`);
      continue;
    }
    const problem = await makeAndRecordThumbnail(deps, row.id, outputKey, thumbnailKey);
    if (problem === undefined) outcome(finding, "repaired", `made from ${outputKey}`);
    else outcome(finding, "not-repaired", `could not make it: ${problem}`);
  }
}

/** --adopt: an unreferenced object recorded on the generation its key names, when that row is its owner's and context's. */
async function adoptObjects(ctx: RepairContext, findings: Finding[]): Promise<void> {
  const { deps, outcome } = ctx;
  for (const finding of findings) {
    const key = finding.key!;
    const parsed = parseContextKey(key);
    if (!parsed) {
      outcome(finding, "not-repaired", "its key names no generation (not in the context layout)");
      continue;
    }
    const row = await findGeneration(parsed.id, { db: deps.db });
    if (!row) {
      outcome(finding, "not-repaired", `no generation has id ${parsed.id}`);
      continue;
    }
    const context = resolveOperation(row).storageContext;
    if (row.userId !== parsed.userId || context !== parsed.context) {
      outcome(
        finding,
        "not-repaired",
        `generation ${row.id} is ${row.userId}'s in ${context}/, not where the key says`,
      );
      continue;
    }
    if (ctx.input.dryRun) {
      outcome(finding, "planned", `would be recorded on generation ${row.id}`);
      continue;
    }
    const info = await deps.storage.head(key);
    if (!info) {
      outcome(finding, "not-repaired", "gone since the listing");
      continue;
    }
    await writeRowById(deps.db, row.id, (current) => {
      const storageKeys = mergeStorageKeys(current.storageKeys, [
        { key, size: info.size, etag: info.etag, contentType: info.contentType ?? null, kind: parsed.kind },
      ]);
      return storageKeys.length === current.storageKeys.length ? null : { storageKeys };
    });
    // An image adopted as an output gets its thumbnail too, as the pipeline would have made it.
    const thumbnailKey =
      parsed.kind === "output" && isImageExtension(parsed.ext)
        ? thumbnailKeyFor(parsed.context, parsed.userId, parsed.id, parsed.index)
        : undefined;
    const problem = thumbnailKey && (await makeAndRecordThumbnail(deps, row.id, key, thumbnailKey));
    outcome(
      finding,
      "repaired",
      `recorded on generation ${row.id}${problem ? ` (no thumbnail: ${problem})` : thumbnailKey ? ", with its thumbnail" : ""}`,
    );
  }
}

/** Makes a thumbnail from a stored output and records it on the row; the reason when it cannot. */
async function makeAndRecordThumbnail(
  deps: DoctorDeps,
  rowId: string,
  outputKey: string,
  thumbnailKey: string,
): Promise<string | undefined> {
  try {
    const thumb = await makeThumbnail(deps.storage, outputKey, thumbnailKey, deps.signal);
    await writeRowById(deps.db, rowId, (current) => {
      const storageKeys = mergeStorageKeys(current.storageKeys, [thumb.entry]);
      return storageKeys.length === current.storageKeys.length ? null : { storageKeys };
    });
    return undefined;
  } catch (error) {
    if (deps.signal?.aborted) throw error;
    return error instanceof Error ? error.message : String(error);
  }
}

/** Calls report at most every 200 ms (and always when forced). */
function throttled(report: ((progress: DoctorProgress) => void) | undefined) {
  let last = 0;
  return (progress: DoctorProgress, force = false) => {
    if (!report) return;
    const now = Date.now();
    if (!force && now - last < 200) return;
    last = now;
    report(progress);
  };
}
