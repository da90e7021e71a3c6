// migrate-keys, the pure part: which legacy object goes where, how a row's storageKeys
// change, and the crash-recovery decision table for one move. No I/O here: the command
// lists objects, looks rows up, copies and deletes; this file only decides.

import { isSafeSegment, unsafeSegmentReason } from "./ids.ts";
import {
  THUMBNAIL_FOLDER,
  extensionOf,
  isContextKey,
  parseContextKey,
  parseLegacyKey,
  storageKeyFor,
  thumbnailKeyFor,
  type LegacyPattern,
  type ObjectKind,
} from "./keys.ts";
import { STORAGE_CONTEXTS, resolveOperation, type StorageContext } from "./operation.ts";

export interface KeyMoveRow {
  id: string;
  userId: string;
  prompt?: string | null;
  operationType?: string | null;
  storageKeys: unknown[];
}

export interface KeyMovePlanOptions {
  /** Move unreferenced legacy objects to `<orphansTo>/<userId>/<file>` instead of leaving them. */
  orphansTo?: StorageContext;
}

export type KeyMovePlan =
  | { action: "skip"; sourceKey: string; reason: "already in context layout" }
  | {
      action: "move";
      sourceKey: string;
      targetKey: string;
      context: StorageContext;
      kind: ObjectKind;
      /** null for an orphan moved with orphansTo (no row to update). */
      generationId: string | null;
      /** Position among the row's entries of the same kind; null for orphans. */
      index: number | null;
    }
  | { action: "orphan"; sourceKey: string; pattern: LegacyPattern; reason?: string }
  | { action: "unknown"; sourceKey: string; reason: string };

/** The key of a storageKeys entry (a plain string or an object with `key`), if any. */
export function storageEntryKey(entry: unknown): string | undefined {
  if (typeof entry === "string") return entry;
  if (entry !== null && typeof entry === "object" && typeof (entry as { key?: unknown }).key === "string") {
    return (entry as { key: string }).key;
  }
  return undefined;
}

/** The kind of a storageKeys entry: its `kind` field, else what its key's layout says, else "output". */
export function storageEntryKind(entry: unknown): ObjectKind {
  if (entry !== null && typeof entry === "object") {
    const kind = (entry as { kind?: unknown }).kind;
    if (kind === "output" || kind === "thumbnail") return kind;
  }
  const key = storageEntryKey(entry);
  return key === undefined ? "output" : kindOfKey(key);
}

function kindOfKey(key: string): ObjectKind {
  const context = parseContextKey(key);
  if (context) return context.kind;
  const legacy = parseLegacyKey(key);
  return legacy.pattern === "unknown" ? "output" : legacy.kind;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Decides what migrate-keys does with one object. `row` is the generation whose
 * storageKeys list objectKey (undefined when none does).
 *
 * - keys already in the context layout are skipped (so reruns are no-ops);
 * - keys no legacy pattern recognises are reported as unknown, never guessed at;
 * - a referenced key moves to storageKeyFor/thumbnailKeyFor(context of the row by the
 *   hybrid rule, row.userId, row.id, index among the row's entries of the same kind, the
 *   source's extension);
 * - an unreferenced key is an orphan, unless orphansTo is given and the legacy key names a
 *   safe userId: then it moves to `<orphansTo>/<userId>/<file>` (thumbnails to
 *   `thumbnails/<orphansTo>/<userId>/<file>`, so they never mix with outputs).
 * Unsafe userIds, ids or extensions (which keys.ts refuses by throwing) become "unknown".
 */
export function planKeyMove(
  objectKey: string,
  row: KeyMoveRow | undefined,
  options: KeyMovePlanOptions = {},
): KeyMovePlan {
  const sourceKey = objectKey;
  if (isContextKey(sourceKey)) return { action: "skip", sourceKey, reason: "already in context layout" };
  const legacy = parseLegacyKey(sourceKey);
  if (legacy.pattern === "unknown") return { action: "unknown", sourceKey, reason: legacy.reason };

  if (row === undefined) {
    const { orphansTo } = options;
    if (orphansTo === undefined) return { action: "orphan", sourceKey, pattern: legacy.pattern };
    const refuse = (reason: string): KeyMovePlan => ({ action: "orphan", sourceKey, pattern: legacy.pattern, reason });
    if (!(STORAGE_CONTEXTS as readonly string[]).includes(orphansTo))
      return refuse(`unknown context ${JSON.stringify(orphansTo)}`);
    if (legacy.userId === undefined) return refuse("the legacy key names no userId");
    const userReason = unsafeSegmentReason(legacy.userId);
    if (userReason !== undefined) return refuse(`userId ${JSON.stringify(legacy.userId)} ${userReason}`);
    if (!isSafeSegment(legacy.file))
      return refuse(`file name ${JSON.stringify(legacy.file)} ${unsafeSegmentReason(legacy.file)}`);
    const targetKey =
      legacy.kind === "thumbnail"
        ? `${THUMBNAIL_FOLDER}/${orphansTo}/${legacy.userId}/${legacy.file}`
        : `${orphansTo}/${legacy.userId}/${legacy.file}`;
    return {
      action: "move",
      sourceKey,
      targetKey,
      context: orphansTo,
      kind: legacy.kind,
      generationId: null,
      index: null,
    };
  }

  const position = row.storageKeys.findIndex((entry) => storageEntryKey(entry) === sourceKey);
  if (position < 0) {
    return {
      action: "unknown",
      sourceKey,
      reason: `generation ${JSON.stringify(row.id)} does not list this key in storageKeys`,
    };
  }
  const entry = row.storageKeys[position];
  const kind = storageEntryKind(entry);
  const index = row.storageKeys
    .slice(0, position)
    .filter((e) => storageEntryKey(e) !== undefined && storageEntryKind(e) === kind).length;
  const ext = extensionOf(sourceKey);
  if (ext === undefined) return { action: "unknown", sourceKey, reason: "has no file extension" };
  const context = resolveOperation(row).storageContext;
  let targetKey: string;
  try {
    targetKey =
      kind === "thumbnail"
        ? thumbnailKeyFor(context, row.userId, row.id, index, ext)
        : storageKeyFor(context, row.userId, row.id, index, ext);
  } catch (error) {
    return { action: "unknown", sourceKey, reason: `refused: ${errorMessage(error)}` };
  }
  return { action: "move", sourceKey, targetKey, context, kind, generationId: row.id, index };
}

/**
 * The row's storageKeys with the entry for sourceKey pointing at target.key: object
 * entries keep their other fields (size/etag replaced when given), string entries become
 * `{ key, kind }` (plus size/etag when given). Any other entry already holding target.key
 * is dropped so the key is never listed twice. When sourceKey is absent (not referenced,
 * or already replaced by an earlier run) the same array is returned, so
 * `result === storageKeys` means "nothing to write".
 */
export function replaceStorageKey(
  storageKeys: unknown[],
  sourceKey: string,
  target: { key: string; size?: number; etag?: string },
): unknown[] {
  if (!storageKeys.some((entry) => storageEntryKey(entry) === sourceKey)) return storageKeys;
  const extra = {
    ...(target.size !== undefined ? { size: target.size } : {}),
    ...(target.etag !== undefined ? { etag: target.etag } : {}),
  };
  const result: unknown[] = [];
  let placed = false;
  for (const entry of storageKeys) {
    const key = storageEntryKey(entry);
    if (key === sourceKey) {
      if (placed) continue;
      placed = true;
      if (typeof entry === "string") result.push({ key: target.key, kind: storageEntryKind(entry), ...extra });
      else result.push({ ...(entry as object), key: target.key, ...extra });
    } else if (key === target.key) {
      continue;
    } else {
      result.push(entry);
    }
  }
  return result;
}

export type KeyMoveStep = "planned" | "copied" | "recorded" | "done";

export interface KeyMoveFacts {
  sourceExists: boolean;
  targetExists: boolean;
  /** The target's size/etag equal the source's (or the journal's, once the source is gone). */
  targetMatches: boolean;
  rowPointsAtTarget: boolean;
  rowPointsAtSource: boolean;
  /** --keep-source: never delete the legacy object. */
  keepSource: boolean;
}

export type KeyMoveAction = "copy" | "verify" | "record" | "delete-source" | "done" | { conflict: string };

/**
 * The crash-recovery table. The command loops: observe the facts, ask this function,
 * act, write the journal, repeat:
 *   copy          server-side copy source → target (journal unchanged; observe again)
 *   verify        the target exists and matches: write journal step "copied" (+size/etag)
 *   record        update the row with replaceStorageKey (idempotent): journal "recorded"
 *   delete-source delete the legacy object: journal "done"
 *   done          nothing left (write journal "done" if it is not yet)
 * A target that exists with different content is a conflict and is never overwritten;
 * the source is only deleted once the journal says the copy was verified and the row
 * recorded, the target still matches, and the row no longer points at the source.
 */
export function nextKeyMoveStep(step: KeyMoveStep, facts: KeyMoveFacts): KeyMoveAction {
  const { sourceExists, targetExists, targetMatches, rowPointsAtTarget, rowPointsAtSource, keepSource } = facts;
  if (targetExists && !targetMatches)
    return { conflict: "the target exists with different content; it is not overwritten" };
  if (!targetExists) {
    if (sourceExists) return "copy";
    if (step === "done" || step === "recorded") {
      return {
        conflict:
          "both the source and the target are missing" +
          (rowPointsAtTarget ? "; the row points at a missing object" : ""),
      };
    }
    return { conflict: "both the source and the target are missing" };
  }
  // From here on the target exists and matches.
  switch (step) {
    case "planned":
      return "verify";
    case "copied":
      return "record";
    case "recorded":
    case "done":
      if (rowPointsAtSource) return "record";
      if (!sourceExists || keepSource) return "done";
      return "delete-source";
  }
}

export interface KeyMoveSummary {
  total: number;
  moves: number;
  byContext: Record<StorageContext, number>;
  /** Moves of unreferenced objects (orphansTo); also counted in moves and byContext. */
  orphansMoved: number;
  orphans: number;
  unknown: number;
  skipped: number;
}

export function summarizePlans(plans: readonly KeyMovePlan[]): KeyMoveSummary {
  const summary = emptyKeyMoveSummary();
  for (const plan of plans) countKeyMovePlan(summary, plan);
  return summary;
}

export function emptyKeyMoveSummary(): KeyMoveSummary {
  return {
    total: 0,
    moves: 0,
    byContext: Object.fromEntries(STORAGE_CONTEXTS.map((c) => [c, 0])) as Record<StorageContext, number>,
    orphansMoved: 0,
    orphans: 0,
    unknown: 0,
    skipped: 0,
  };
}

/** Adds one plan to a running summary (a listing of a million objects is never held at once). */
export function countKeyMovePlan(summary: KeyMoveSummary, plan: KeyMovePlan): void {
  summary.total++;
  if (plan.action === "move") {
    summary.moves++;
    summary.byContext[plan.context]++;
    if (plan.generationId === null) summary.orphansMoved++;
  } else if (plan.action === "orphan") summary.orphans++;
  else if (plan.action === "unknown") summary.unknown++;
  else summary.skipped++;
}

// --- Verification and reporting helpers (migrate-keys' job uses these) -------------------

export interface ObjectFingerprint {
  size: number;
  etag?: string | null;
}

/**
 * Whether an ETag can be compared across a server-side copy: a plain MD5 (single-part
 * object). A multipart ETag ("…-N") depends on the part sizes, and S3 may copy a large
 * object in other parts, so two equal objects can have different multipart ETags.
 */
export function isComparableEtag(etag: string | null | undefined): etag is string {
  return typeof etag === "string" && etag !== "" && !etag.includes("-");
}

/**
 * The verification rule of a move: sizes equal, and ETags equal when both are comparable
 * (single-part). With a multipart ETag on either side, size alone decides.
 */
export function sameObject(a: ObjectFingerprint, b: ObjectFingerprint): boolean {
  if (a.size !== b.size) return false;
  if (isComparableEtag(a.etag) && isComparableEtag(b.etag)) return a.etag === b.etag;
  return true;
}

/** The context a move's target key belongs to (context layout, orphan folders, thumbnails). */
export function contextOfTargetKey(key: string): StorageContext | undefined {
  const parts = key.split("/");
  const folder = parts[0] === THUMBNAIL_FOLDER ? parts[1] : parts[0];
  return (STORAGE_CONTEXTS as readonly string[]).includes(folder ?? "") ? (folder as StorageContext) : undefined;
}
