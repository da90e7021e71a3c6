import { parseDateInput } from "../core/dates.ts";
import type { ListFilters } from "../core/list-query.ts";
import { isStorageContext, type StorageContext } from "../core/operation.ts";
import { isStatus } from "../core/status.ts";

// The gallery's requests, parsed: the page's filters from its query string (the same
// names the page keeps in its own URL), media paths, and HTTP ranges. Pure: no IO.

export type GalleryFilters = Omit<ListFilters, "limit" | "after" | "context">;

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const DAY_MS = 86_400_000;
const FILTER_NAMES = ["user", "status", "since", "until"] as const;
const MAX_TEXT = 500;

/** user, status, since, until: the filters shared by a page and its counts. */
export function parseFilters(query: URLSearchParams, now = new Date()): Parsed<GalleryFilters> {
  const filters: GalleryFilters = {};
  const user = query.get("user")?.trim();
  if (user) {
    if (user.length > MAX_TEXT) return { ok: false, message: "user is too long" };
    filters.userId = user;
  }
  const status = query.get("status");
  if (status) {
    if (!isStatus(status)) return { ok: false, message: `unknown status ${JSON.stringify(status.slice(0, 40))}` };
    filters.statuses = [status];
  }
  for (const name of ["since", "until"] as const) {
    const text = query.get(name)?.trim();
    if (!text) continue;
    const date = parseDateInput(text.slice(0, 40), now);
    if (!date) return { ok: false, message: `${name} must be a date (2026-11-20), a time, or a duration (24h, 7d)` };
    // A bare date as the end of a range means that whole day: rows created before the next one.
    filters[name] = name === "until" && /^\d{4}-\d{2}-\d{2}$/.test(text) ? new Date(date.getTime() + DAY_MS) : date;
  }
  return { ok: true, value: filters };
}

/** The filters as typed, in one order: which counts a query asks for. */
export function countsKey(query: URLSearchParams): string {
  const key = new URLSearchParams();
  for (const name of FILTER_NAMES) {
    const value = query.get(name)?.trim();
    if (value) key.set(name, value);
  }
  return key.toString();
}

export function parseTab(query: URLSearchParams): Parsed<StorageContext | undefined> {
  const tab = query.get("tab") ?? "all";
  if (tab === "all") return { ok: true, value: undefined };
  if (isStorageContext(tab)) return { ok: true, value: tab };
  return { ok: false, message: `unknown tab ${JSON.stringify(tab.slice(0, 40))}` };
}

/**
 * `/media/<id>/<key>` from the raw request path, each segment percent-decoded once. Any
 * segment that is empty, `.` or `..`, starts with a dot, or decodes to something holding
 * `/`, `\` or a control character makes the path unknown (404), whether it was encoded or
 * not: a key from the URL can only ever name a plain key below the storage root.
 */
export function parseMediaPath(rawPath: string): { id: string; key: string } | undefined {
  if (!rawPath.startsWith("/media/")) return undefined;
  const segments: string[] = [];
  for (const raw of rawPath.slice("/media/".length).split("/")) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    // eslint-disable-next-line no-control-regex -- control characters are exactly what it refuses
    if (segment === "" || segment.startsWith(".") || /[/\\\u0000-\u001f\u007f]/.test(segment)) return undefined;
    segments.push(segment);
  }
  if (segments.length < 2) return undefined;
  const [id, ...key] = segments;
  return { id: id!, key: key.join("/") };
}

export type RangeDecision =
  { kind: "whole" } | { kind: "partial"; start: number; end: number } | { kind: "unsatisfiable" };

/**
 * One `Range: bytes=…` against an object of size bytes (RFC 9110 §14). Several ranges, or
 * anything malformed, are served as the whole object, which the RFC allows; a range that
 * starts past the end is unsatisfiable (416).
 */
export function decideRange(header: string | undefined, size: number): RangeDecision {
  if (header === undefined) return { kind: "whole" };
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return { kind: "whole" };
  if (match[1] === "") {
    // A suffix: the last n bytes.
    const length = Number(match[2]);
    if (length === 0) return { kind: "unsatisfiable" };
    return size === 0
      ? { kind: "unsatisfiable" }
      : { kind: "partial", start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size) return { kind: "unsatisfiable" };
  if (end < start) return { kind: "whole" };
  return { kind: "partial", start, end };
}
