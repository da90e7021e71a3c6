// `genstore doctor`, the pure part: the classes of finding, what each row says about itself
// (stuck, never stored, off layout, context mismatch, thumbnail not listed), and the
// merge-join of two sorted streams (the keys the rows list, the objects storage lists) that
// yields missing, mismatched and unreferenced objects holding one item of each side at a
// time. The job reads the rows and lists storage; this file only decides.

import { compareKeys, isImageExtension, parseContextKey, THUMBNAIL_FOLDER, thumbnailKeyFor } from "./keys.ts";
import { storageEntryKey, storageEntryKind } from "./key-moves.ts";
import { isStorageContext, resolveOperation, STORAGE_CONTEXTS } from "./operation.ts";
import type { ObjectKind } from "./keys.ts";

export const FINDING_KINDS = [
  "missing-object",
  "size-mismatch",
  "unreferenced-object",
  "missing-thumbnail",
  "never-stored",
  "stuck",
  "off-layout",
  "failed-delivery",
  "context-mismatch",
  "lost",
] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

export interface FindingClass {
  label: string;
  /** Whether it makes the run exit with the problems code (a lost object already recorded as such does not). */
  problem: boolean;
  /** What --repair does about it, as the README and the summary say it. */
  repair: string;
}

/** The findings table, in one place (the summary and the README follow it). */
export const FINDING_CLASSES: Record<FindingKind, FindingClass> = {
  "missing-object": {
    label: "missing object",
    problem: true,
    repair: "recover it through the pipeline while Replicate has the output; else mark the row (metadata.lostObjects)",
  },
  "size-mismatch": {
    label: "size mismatch",
    problem: true,
    repair: "nothing: the object is never overwritten; compare it with the source by hand",
  },
  "unreferenced-object": {
    label: "unreferenced object",
    problem: true,
    repair: "nothing by default; --adopt records it on the row when its key names a known generation",
  },
  "missing-thumbnail": {
    label: "missing thumbnail",
    problem: true,
    repair: "make it from the stored object (no download) and record it",
  },
  "never-stored": {
    label: "never stored",
    problem: true,
    repair: "run the pipeline, as `recover` does",
  },
  stuck: { label: "stuck", problem: true, repair: "poll Replicate, as `recover --pending` does" },
  "off-layout": { label: "off layout", problem: true, repair: "nothing: run `genstore migrate-keys`" },
  "failed-delivery": {
    label: "failed delivery",
    problem: true,
    repair: "with --retry-failed, put it back in the queue (pending)",
  },
  "context-mismatch": { label: "context mismatch", problem: true, repair: "nothing: it reports" },
  lost: {
    label: "lost (recorded)",
    problem: false,
    repair: "nothing: an earlier repair found the source gone and marked the row",
  },
};

export interface Finding {
  kind: FindingKind;
  /** The storage key concerned, when there is one. */
  key?: string;
  generationId?: string;
  replicateId?: string | null;
  userId?: string;
  /** The WebhookDelivery's id (failed delivery). */
  deliveryId?: string;
  /** Sizes of a size mismatch (and of an unreferenced object). */
  expectedSize?: number;
  actualSize?: number;
  /** The thumbnail key a missing thumbnail should have. */
  thumbnailKey?: string;
  /** One line for people. */
  detail: string;
}

// --- Rows -----------------------------------------------------------------------------

/** The fields of a generation row doctor reads. */
export interface DoctorRow {
  id: string;
  userId: string;
  prompt: string;
  status: string;
  replicateId: string | null;
  imageUrls: string[];
  storageKeys: unknown[];
  operationType: string | null;
  storageContext: string | null;
  metadata: unknown;
  createdAt: Date;
}

export interface RowCheckOptions {
  now: Date;
  /** A row starting or processing for longer than this is stuck. */
  stuckAfterMs: number;
}

export const DEFAULT_STUCK_AFTER_MS = 60 * 60_000;

/** What a row says about itself, storage aside: stuck, never stored, off layout, context mismatch, thumbnail not listed. */
export function rowFindings(row: DoctorRow, options: RowCheckOptions): Finding[] {
  const findings: Finding[] = [];
  const about = { generationId: row.id, replicateId: row.replicateId, userId: row.userId };
  if (
    (row.status === "starting" || row.status === "processing") &&
    options.now.getTime() - row.createdAt.getTime() > options.stuckAfterMs
  ) {
    findings.push({
      kind: "stuck",
      ...about,
      detail: `${row.status} since ${row.createdAt.toISOString()}${row.replicateId === null ? " (no replicateId: it cannot be polled)" : ""}`,
    });
  }
  const entries = row.storageKeys
    .map((entry) => ({ key: storageEntryKey(entry), kind: storageEntryKind(entry) }))
    .filter((e): e is { key: string; kind: ObjectKind } => e.key !== undefined);
  const outputs = entries.filter((e) => e.kind === "output");
  if (row.status === "succeeded" && row.imageUrls.length > 0 && outputs.length === 0) {
    const accounted = accountedOutputs(row.metadata);
    const left = row.imageUrls.map((_, index) => index).filter((index) => !accounted.has(index));
    if (left.length > 0)
      findings.push({
        kind: "never-stored",
        ...about,
        detail: `succeeded with ${row.imageUrls.length} output URL${row.imageUrls.length === 1 ? "" : "s"} and no stored output`,
      });
    else
      findings.push({
        kind: "lost",
        ...about,
        detail: "succeeded, but its outputs were gone before they were stored (recorded on the row)",
      });
  }
  const context = resolveOperation(row).storageContext;
  if (row.storageContext !== null && row.storageContext !== context) {
    findings.push({
      kind: "context-mismatch",
      ...about,
      detail: `storageContext is ${JSON.stringify(row.storageContext)} but the hybrid rule says ${context}`,
    });
  }
  const listed = new Set(entries.map((e) => e.key));
  for (const entry of entries) {
    const parsed = parseContextKey(entry.key);
    if (parsed === undefined) {
      findings.push({
        kind: "off-layout",
        ...about,
        key: entry.key,
        detail: "outside the context layout: `genstore migrate-keys` moves it",
      });
      continue;
    }
    if (parsed.context !== context) {
      findings.push({
        kind: "context-mismatch",
        ...about,
        key: entry.key,
        detail: `in ${parsed.kind === "thumbnail" ? `${THUMBNAIL_FOLDER}/` : ""}${parsed.context}/ but the row's context is ${context}`,
      });
    }
    if (parsed.kind === "output" && isImageExtension(parsed.ext)) {
      const thumbnailKey = expectedThumbnailKey(parsed);
      if (thumbnailKey !== undefined && !listed.has(thumbnailKey))
        findings.push({
          kind: "missing-thumbnail",
          ...about,
          key: entry.key,
          thumbnailKey,
          detail: `the row lists no thumbnail (${thumbnailKey})`,
        });
    }
  }
  return findings;
}

function expectedThumbnailKey(parsed: NonNullable<ReturnType<typeof parseContextKey>>): string | undefined {
  try {
    return thumbnailKeyFor(parsed.context, parsed.userId, parsed.id, parsed.index);
  } catch {
    return undefined; // an id or userId keys.ts refuses: not ours to name
  }
}

/** Output indexes the row already records as gone for good (expired, failed, or lost by an earlier repair). */
function accountedOutputs(metadata: unknown): Set<number> {
  const meta = isObject(metadata) ? metadata : {};
  const indexes = new Set<number>();
  for (const field of ["expiredOutputs", "failedOutputs", "lostOutputs"]) {
    const list = meta[field];
    if (!Array.isArray(list)) continue;
    for (const item of list) {
      const index = isObject(item) ? item["index"] : undefined;
      if (typeof index === "number") indexes.add(index);
    }
  }
  return indexes;
}

/** Keys an earlier repair recorded as lost on the row (metadata.lostObjects). */
export function lostKeys(metadata: unknown): Set<string> {
  const list = isObject(metadata) ? metadata["lostObjects"] : undefined;
  const keys = new Set<string>();
  if (Array.isArray(list))
    for (const item of list) if (isObject(item) && typeof item["key"] === "string") keys.add(item["key"]);
  return keys;
}

export interface LostObject {
  key: string;
  kind: ObjectKind;
  reason: string;
  at: string;
}

/** The row's metadata with these keys recorded as lost (once each); the same object when nothing is new. */
export function markLost(metadata: unknown, lost: readonly LostObject[]): Record<string, unknown> {
  const meta = isObject(metadata) ? { ...metadata } : {};
  const known = lostKeys(meta);
  const added = lost.filter((l) => !known.has(l.key));
  if (added.length === 0) return meta;
  const previous = Array.isArray(meta["lostObjects"]) ? (meta["lostObjects"] as unknown[]) : [];
  return { ...meta, lostObjects: [...previous, ...added] };
}

// --- Keys and objects: the merge-join ----------------------------------------------------

/** One key a row lists, as SQL streams them (in byte order of the key). */
export interface ExpectedKey {
  key: string;
  size: number | null;
  kind: ObjectKind;
  generationId: string;
  replicateId: string | null;
  userId: string;
  /** The row already records this key as lost. */
  lost: boolean;
}

/** One object as storage lists it (in byte order of the key). */
export interface ListedObject {
  key: string;
  size: number;
}

export type MergeEvent =
  | { type: "match"; expected: ExpectedKey; object: ListedObject }
  | { type: "missing"; expected: ExpectedKey }
  /** An object no expected key names. */
  | { type: "unlisted"; object: ListedObject }
  /** An expected key outside what was listed (a narrowed scan): the caller asks storage for it. */
  | { type: "outside"; expected: ExpectedKey };

/** A stream that went out of order would make the join report false findings: it stops instead. */
export class UnsortedStreamError extends Error {
  override name = "UnsortedStreamError";
}

/**
 * Walks both sorted streams once, a page at a time: the events of each page of expected
 * keys come as one array (a promise per page, not per key: doctor goes through millions).
 * Several rows may list one key: each is matched against the same object. `covers` says
 * which keys the listing can contain (a narrowed scan lists some prefixes only); an
 * expected key outside it is passed on as "outside".
 */
export async function* mergeKeys(
  expected: AsyncIterable<readonly ExpectedKey[]>,
  listed: AsyncIterable<readonly ListedObject[]>,
  covers: (key: string) => boolean = () => true,
): AsyncGenerator<MergeEvent[]> {
  const pages = listed[Symbol.asyncIterator]();
  let objects: readonly ListedObject[] = [];
  let at = 0; // objects[at] is the current object; none once at === objects.length
  let matched = false;
  let previousObject: string | undefined;
  let listingDone = false;
  // The next page when this one is done (the only await on this side), checked for order.
  const refill = async () => {
    while (!listingDone) {
      const step = await pages.next();
      if (step.done) {
        listingDone = true;
        return;
      }
      if (step.value.length === 0) continue;
      objects = step.value;
      at = 0;
      checkObjectOrder();
      return;
    }
  };
  const checkObjectOrder = () => {
    const object = objects[at]!;
    if (previousObject !== undefined && compareKeys(previousObject, object.key) >= 0)
      throw new UnsortedStreamError(
        `Storage listed ${JSON.stringify(object.key)} after ${JSON.stringify(previousObject)}.`,
      );
    previousObject = object.key;
  };
  const advance = () => {
    at += 1;
    matched = false;
    if (at < objects.length) checkObjectOrder();
  };
  await refill();
  let events: MergeEvent[] = [];
  let previous: string | undefined;
  for await (const page of expected) {
    for (const item of page) {
      if (previous !== undefined && compareKeys(previous, item.key) > 0)
        throw new UnsortedStreamError(
          `The database listed ${JSON.stringify(item.key)} after ${JSON.stringify(previous)}.`,
        );
      previous = item.key;
      if (!covers(item.key)) {
        events.push({ type: "outside", expected: item });
        continue;
      }
      for (;;) {
        if (at === objects.length && !listingDone) await refill();
        const object = objects[at];
        if (object === undefined || compareKeys(object.key, item.key) >= 0) break;
        if (!matched) events.push({ type: "unlisted", object });
        advance();
      }
      const object = objects[at];
      if (object !== undefined && object.key === item.key) {
        matched = true;
        events.push({ type: "match", expected: item, object });
      } else events.push({ type: "missing", expected: item });
    }
    if (events.length > 0) {
      yield events;
      events = [];
    }
  }
  for (;;) {
    if (at === objects.length) {
      if (events.length > 0) yield events;
      events = [];
      await refill();
    }
    const object = objects[at];
    if (object === undefined) break;
    if (!matched) events.push({ type: "unlisted", object });
    advance();
  }
}

/** Whether an unreferenced object is doctor's business: it is in a context folder (or its thumbnails). */
export function inContextFolder(key: string): boolean {
  const parts = key.split("/");
  const folder = parts[0] === THUMBNAIL_FOLDER ? parts[1] : parts[0];
  return parts.length >= (parts[0] === THUMBNAIL_FOLDER ? 3 : 2) && isStorageContext(folder);
}

/** The finding a merge event makes, or none (a matching object, an unlisted object outside the context folders). */
export function findingOfMerge(event: Exclude<MergeEvent, { type: "outside" }>): Finding | undefined {
  if (event.type === "unlisted") {
    if (!inContextFolder(event.object.key)) return undefined;
    const parsed = parseContextKey(event.object.key);
    return {
      kind: "unreferenced-object",
      key: event.object.key,
      actualSize: event.object.size,
      ...(parsed ? { userId: parsed.userId } : {}),
      detail: `${event.object.size.toLocaleString("en-US")} bytes that no row lists`,
    };
  }
  const e = event.expected;
  const about = { key: e.key, generationId: e.generationId, replicateId: e.replicateId, userId: e.userId };
  if (event.type === "missing") {
    if (e.lost) return { kind: "lost", ...about, detail: "absent; an earlier repair recorded it as lost" };
    if (e.kind === "thumbnail")
      return {
        kind: "missing-thumbnail",
        ...about,
        thumbnailKey: e.key,
        detail: "the row lists it, storage has no such object",
      };
    return { kind: "missing-object", ...about, expectedSize: e.size ?? undefined, detail: "absent in storage" };
  }
  if (e.size !== null && e.size !== event.object.size) {
    return {
      kind: "size-mismatch",
      ...about,
      expectedSize: e.size,
      actualSize: event.object.size,
      detail: `the row says ${e.size.toLocaleString("en-US")} bytes, storage has ${event.object.size.toLocaleString("en-US")}`,
    };
  }
  return undefined;
}

/**
 * For --adopt: the generation id and output index an unreferenced key names, when it is an
 * output or thumbnail in the context layout (`generated/<userId>/<id>_<n>.<ext>`).
 */
export function adoptionTarget(
  key: string,
): { generationId: string; userId: string; index: number; kind: ObjectKind; context: string } | undefined {
  const parsed = parseContextKey(key);
  if (!parsed) return undefined;
  return {
    generationId: parsed.id,
    userId: parsed.userId,
    index: parsed.index,
    kind: parsed.kind,
    context: parsed.context,
  };
}

// --- The scan's plan and the summary ---------------------------------------------------------

export interface DoctorScope {
  userId?: string;
  context?: (typeof STORAGE_CONTEXTS)[number];
  since?: Date;
}

/**
 * The key prefixes to list for a scope, sorted in key order and never nested, so their
 * listings one after the other are one sorted stream: everything for a whole scan; the
 * context's folders (and thumbnails) when narrowed. Keys of the rows outside them (legacy
 * keys) are checked one by one.
 */
export function listingPrefixes(scope: DoctorScope): string[] {
  if (scope.context === undefined && scope.userId === undefined) return [""];
  const contexts = scope.context !== undefined ? [scope.context] : [...STORAGE_CONTEXTS];
  const user = scope.userId !== undefined ? `${scope.userId}/` : "";
  const prefixes = contexts.flatMap((c) => [`${c}/${user}`, `${THUMBNAIL_FOLDER}/${c}/${user}`]);
  return prefixes.sort(compareKeys);
}

export function coveredBy(prefixes: readonly string[]): (key: string) => boolean {
  return (key) => prefixes.some((p) => key.startsWith(p));
}

export interface DoctorSummary {
  counts: Record<FindingKind, number>;
  /** The first few of each kind. */
  examples: Record<FindingKind, Finding[]>;
  rows: number;
  keys: number;
  objects: number;
}

export const EXAMPLES_PER_KIND = 5;

export function emptySummary(): DoctorSummary {
  return {
    counts: Object.fromEntries(FINDING_KINDS.map((k) => [k, 0])) as Record<FindingKind, number>,
    examples: Object.fromEntries(FINDING_KINDS.map((k) => [k, []])) as unknown as Record<FindingKind, Finding[]>,
    rows: 0,
    keys: 0,
    objects: 0,
  };
}

export function countFinding(summary: DoctorSummary, finding: Finding, examples = EXAMPLES_PER_KIND): void {
  summary.counts[finding.kind] += 1;
  if (summary.examples[finding.kind].length < examples) summary.examples[finding.kind].push(finding);
}

/** How many findings are problems (everything but what is already recorded as lost). */
export function problemCount(counts: Record<FindingKind, number>): number {
  return FINDING_KINDS.filter((k) => FINDING_CLASSES[k].problem).reduce((sum, k) => sum + counts[k], 0);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
