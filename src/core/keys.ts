import { CONTROL, MAX_ID_BYTES, MAX_SEGMENT_BYTES, assertSafeSegment, utf8Length } from "./ids.ts";
import { STORAGE_CONTEXTS, isStorageContext, type StorageContext } from "./operation.ts";

// The storage layout, in one place:
//   generated/<userId>/<id>_<n>.<ext>      edited/<userId>/<id>_<n>.<ext>
//   upscaled/<userId>/<id>_<n>.<ext>       videos/<userId>/<id>.<ext>  (<id>_<n> from the 2nd on)
//   thumbnails/<context>/<userId>/<id>_<n>.<ext>

export const THUMBNAIL_FOLDER = "thumbnails";
export type ObjectKind = "output" | "thumbnail";

const EXTENSION = /^[a-z0-9]{1,8}$/;
/** S3's limit for a whole key. */
export const MAX_KEY_BYTES = 1024;

/**
 * Why key cannot be a storage key, or undefined: the rule both providers' keys obey (the
 * local provider refuses anything else, as it could escape its root or clash with its own
 * dot-files). Every segment is non-empty, not "." or "..", does not start with "." and is at
 * most MAX_SEGMENT_BYTES; the key has no control character or backslash and is at most
 * MAX_KEY_BYTES, in UTF-8 bytes.
 */
export function storageKeyProblem(key: string): string | undefined {
  if (key === "") return "is empty";
  const bytes = utf8Length(key);
  if (bytes > MAX_KEY_BYTES) return `is ${bytes} bytes long in UTF-8, over the limit of ${MAX_KEY_BYTES}`;
  if (CONTROL.test(key)) return "contains a control character";
  if (key.includes("\\")) return "contains a backslash";
  if (key.startsWith("/")) return "is an absolute path";
  for (const segment of key.split("/")) {
    if (segment === "") return "has an empty segment (a leading, trailing or doubled /)";
    if (segment === "." || segment === "..") return `has a "${segment}" segment`;
    if (segment.startsWith(".")) return "has a segment starting with a dot (reserved for genstore's own files)";
    if (utf8Length(segment) > MAX_SEGMENT_BYTES) return `has a segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

function checkParts(userId: string, id: string, index: number, ext: string): void {
  assertSafeSegment("userId", userId);
  assertSafeSegment("id", id, undefined, MAX_ID_BYTES);
  if (!Number.isInteger(index) || index < 0 || index >= 1e10)
    throw new Error(`Output index must be a whole number from 0 to 9999999999, got ${index}.`);
  if (!EXTENSION.test(ext)) throw new Error(`Refusing file extension ${JSON.stringify(ext)}.`);
}

function checkedKey(key: string): string {
  const problem = storageKeyProblem(key);
  if (problem !== undefined) throw new Error(`Refusing storage key ${JSON.stringify(key)}: it ${problem}.`);
  return key;
}

export function storageKeyFor(context: StorageContext, userId: string, id: string, index: number, ext: string): string {
  checkParts(userId, id, index, ext);
  const name = context === "videos" && index === 0 ? id : `${id}_${index}`;
  return checkedKey(`${context}/${userId}/${name}.${ext}`);
}

export function thumbnailKeyFor(
  context: StorageContext,
  userId: string,
  id: string,
  index: number,
  ext = "webp",
): string {
  checkParts(userId, id, index, ext);
  return checkedKey(`${THUMBNAIL_FOLDER}/${context}/${userId}/${id}_${index}.${ext}`);
}

export interface ContextKey {
  kind: ObjectKind;
  context: StorageContext;
  userId: string;
  id: string;
  index: number;
  ext: string;
}

/** Parses a key that is already in the context layout, or returns undefined. */
export function parseContextKey(key: string): ContextKey | undefined {
  const parts = key.split("/");
  const thumbnail = parts[0] === THUMBNAIL_FOLDER;
  const [context, userId, file] = thumbnail ? parts.slice(1) : parts;
  if (parts.length !== (thumbnail ? 4 : 3) || !isStorageContext(context) || !userId || !file) return undefined;
  const match = /^(.+?)(?:_(\d+))?\.([a-z0-9]{1,8})$/.exec(file);
  if (!match) return undefined;
  const [, id, n, ext] = match as unknown as [string, string, string | undefined, string];
  if (n === undefined && (thumbnail || context !== "videos")) return undefined;
  return { kind: thumbnail ? "thumbnail" : "output", context, userId, id, index: n === undefined ? 0 : Number(n), ext };
}

/**
 * Keys compared as S3 and PostgreSQL's COLLATE "C" compare them: by UTF-8 bytes, which is
 * code point order. JavaScript's < compares UTF-16 units, which differs above U+FFFF (a
 * surrogate, D800-DFFF, would sort below E000-FFFF): moving surrogates above them fixes it.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codeOrder(x) - codeOrder(y);
  }
  return a.length - b.length;
}

function codeOrder(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit <= 0xdfff ? unit + 0x2000 : unit - 0x800;
}

export function isContextKey(key: string): boolean {
  return parseContextKey(key) !== undefined;
}

// --- Legacy keys (migrate-keys) ---------------------------------------------------------

export type LegacyPattern = "user-flat" | "generations-folder" | "uploads-folder" | "legacy-thumbnail";

export type LegacyKey =
  | { pattern: LegacyPattern; kind: ObjectKind; userId?: string; file: string; ext?: string }
  | { pattern: "unknown"; reason: string };

const LEGACY_THUMBNAIL_FOLDERS = new Set(["thumbnails", "thumbs"]);

/**
 * Recognises the legacy layouts genstore knows how to move:
 *   <userId>/<file>                        user-flat
 *   generations/<userId>/<file>            generations-folder
 *   uploads/<file>, uploads/<userId>/<file> uploads-folder
 *   thumbnails/<userId>/<file>, thumbs/<userId>/<file>  legacy-thumbnail
 * Anything else is reported as unknown rather than guessed at. Keys already in the
 * context layout are not legacy (parseContextKey recognises them).
 */
export function parseLegacyKey(key: string): LegacyKey {
  if (isContextKey(key)) return { pattern: "unknown", reason: "already in the context layout" };
  const parts = key.split("/");
  if (parts.some((p) => p === "" || p === "." || p === ".."))
    return { pattern: "unknown", reason: "has an empty or dot segment" };
  const file = parts.at(-1)!;
  const ext = extensionOf(file);
  const [first, second] = parts;
  if (parts.length === 2 && !isReservedFolder(first!))
    return { pattern: "user-flat", kind: "output", userId: first, file, ext };
  if (parts.length === 3 && first === "generations")
    return { pattern: "generations-folder", kind: "output", userId: second, file, ext };
  if (first === "uploads" && parts.length === 2)
    return { pattern: "uploads-folder", kind: "output", userId: undefined, file, ext };
  if (first === "uploads" && parts.length === 3)
    return { pattern: "uploads-folder", kind: "output", userId: second, file, ext };
  if (parts.length === 3 && LEGACY_THUMBNAIL_FOLDERS.has(first!) && !isStorageContext(second)) {
    return { pattern: "legacy-thumbnail", kind: "thumbnail", userId: second, file, ext };
  }
  return { pattern: "unknown", reason: "matches no known legacy layout" };
}

function isReservedFolder(segment: string): boolean {
  return (
    (STORAGE_CONTEXTS as readonly string[]).includes(segment) ||
    segment === THUMBNAIL_FOLDER ||
    LEGACY_THUMBNAIL_FOLDERS.has(segment) ||
    segment === "generations" ||
    segment === "uploads"
  );
}

export function extensionOf(fileOrUrl: string): string | undefined {
  const name = fileOrUrl.split(/[?#]/)[0]!.split("/").at(-1) ?? "";
  const match = /\.([A-Za-z0-9]{1,8})$/.exec(name);
  return match ? match[1]!.toLowerCase() : undefined;
}

const EXTENSION_BY_TYPE: Record<string, string> = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/webp": "webp",
  "image/gif": "gif",
  "image/avif": "avif",
  "video/mp4": "mp4",
  "video/webm": "webm",
  "video/quicktime": "mov",
};

const TYPE_BY_EXTENSION: Record<string, string> = {
  ...Object.fromEntries(Object.entries(EXTENSION_BY_TYPE).map(([type, ext]) => [ext, type])),
  jpeg: "image/jpeg",
};

/** The extension to store an output under: from its URL, else its content type, else "bin". */
export function extensionFor(url: string, contentType?: string): string {
  const fromUrl = extensionOf(url);
  if (fromUrl && EXTENSION.test(fromUrl)) return fromUrl === "jpeg" ? "jpg" : fromUrl;
  const type = contentType?.split(";")[0]?.trim().toLowerCase();
  return (type && EXTENSION_BY_TYPE[type]) || "bin";
}

export function contentTypeFor(keyOrUrl: string): string | undefined {
  const ext = extensionOf(keyOrUrl);
  return ext ? TYPE_BY_EXTENSION[ext] : undefined;
}

export function isImageExtension(ext: string): boolean {
  return TYPE_BY_EXTENSION[ext]?.startsWith("image/") ?? false;
}
