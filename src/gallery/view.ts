import { contentTypeFor } from "../core/keys.ts";
import { resolveOperation, type Detection } from "../core/operation.ts";
import type { GenerationRecord as Generation } from "../core/generation-table.ts";

// What the gallery page shows of a row, as plain data: the row's fields, its operation by
// the hybrid rule, its stored objects with their media URLs, and every problem spelled out
// (failed, still processing, expired outputs, keys missing in storage, no thumbnail), so
// the page never has to guess. Pure: the server passes in which keys storage lacks.

export type MediaKind = "image" | "video" | "other";

export interface StoredObjectView {
  key: string;
  kind: string;
  size: number | null;
  /** What the gallery serves it as: decided by the key's extension, never by stored metadata. */
  media: MediaKind;
  url: string;
  missing: boolean;
}

export interface OutputProblemView {
  index: number | null;
  problem: string;
  message: string;
}

export interface GenerationView {
  id: string;
  userId: string;
  prompt: string;
  status: string;
  replicateId: string | null;
  model: string | null;
  version: string | null;
  operation: Detection;
  objects: StoredObjectView[];
  /** The object the grid shows: the first thumbnail present, else the first output present. */
  cover: StoredObjectView | null;
  error: string | null;
  expiredOutputs: OutputProblemView[];
  failedOutputs: OutputProblemView[];
  flags: {
    failed: boolean;
    processing: boolean;
    expired: boolean;
    missingKeys: boolean;
    /** An image output with no thumbnail stored (videos get none by design). */
    noThumbnail: boolean;
    noOutput: boolean;
  };
  userIdSource: string | null;
  createdAt: string;
  updatedAt: string;
  completedAt: string | null;
}

export interface GenerationDetailView extends GenerationView {
  imageUrls: string[];
  storageProvider: string | null;
  storageBucket: string | null;
  metadata: unknown;
}

const FAILED = new Set(["failed", "canceled", "aborted"]);
const RUNNING = new Set(["starting", "processing"]);

/** The gallery URL that serves key of generation id (each segment percent-encoded). */
export function mediaUrl(id: string, key: string): string {
  return `/media/${encodeURIComponent(id)}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

export function mediaKindOf(key: string): MediaKind {
  const type = contentTypeFor(key);
  return type?.startsWith("image/") ? "image" : type?.startsWith("video/") ? "video" : "other";
}

/** The keys a row lists in storageKeys (entries without a string key are skipped). */
export function storedKeysOf(row: Pick<Generation, "storageKeys">): string[] {
  return objectEntries(row.storageKeys).map((entry) => entry.key);
}

export function toGenerationView(row: Generation, missing: ReadonlySet<string>): GenerationView {
  const metadata = asObject(row.metadata);
  const objects = objectEntries(row.storageKeys).map((entry): StoredObjectView => ({
    key: entry.key,
    kind: typeof entry.kind === "string" ? entry.kind : "output",
    size: typeof entry.size === "number" ? entry.size : null,
    media: mediaKindOf(entry.key),
    url: mediaUrl(row.id, entry.key),
    missing: missing.has(entry.key),
  }));
  const present = objects.filter((o) => !o.missing);
  const outputs = objects.filter((o) => o.kind !== "thumbnail");
  const thumbnails = objects.filter((o) => o.kind === "thumbnail");
  const cover =
    present.find((o) => o.kind === "thumbnail" && o.media === "image") ??
    present.find((o) => o.kind !== "thumbnail" && o.media !== "other") ??
    null;
  const expiredOutputs = problemsOf(metadata["expiredOutputs"]);
  const failedOutputs = problemsOf(metadata["failedOutputs"]);
  return {
    id: row.id,
    userId: row.userId,
    prompt: row.prompt,
    status: row.status,
    replicateId: row.replicateId,
    model: stringOr(metadata["model"]),
    version: stringOr(metadata["version"]),
    operation: resolveOperation(row),
    objects,
    cover,
    error: row.error,
    expiredOutputs,
    failedOutputs,
    flags: {
      failed: FAILED.has(row.status),
      processing: RUNNING.has(row.status),
      expired: expiredOutputs.length > 0,
      missingKeys: objects.some((o) => o.missing),
      noThumbnail: outputs.some((o) => o.media === "image") && thumbnails.length === 0,
      noOutput: outputs.length === 0,
    },
    userIdSource: stringOr(metadata["userIdSource"]),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    completedAt: row.completedAt?.toISOString() ?? null,
  };
}

export function toGenerationDetailView(row: Generation, missing: ReadonlySet<string>): GenerationDetailView {
  return {
    ...toGenerationView(row, missing),
    imageUrls: row.imageUrls,
    storageProvider: row.storageProvider,
    storageBucket: row.storageBucket,
    metadata: row.metadata,
  };
}

function objectEntries(keys: unknown): Array<{ key: string; [field: string]: unknown }> {
  if (!Array.isArray(keys)) return [];
  return keys.filter(
    (entry): entry is { key: string } =>
      entry !== null && typeof entry === "object" && typeof (entry as { key?: unknown }).key === "string",
  );
}

function problemsOf(value: unknown): OutputProblemView[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((p): p is Record<string, unknown> => p !== null && typeof p === "object")
    .map((p) => ({
      index: typeof p["index"] === "number" ? p["index"] : null,
      problem: stringOr(p["problem"]) ?? "unknown",
      message: stringOr(p["message"]) ?? "",
    }));
}

function asObject(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function stringOr(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}
