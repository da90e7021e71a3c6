// The HTTP side of `gallery`: the page (static files from src/gallery/static), a JSON API
// over runList/countByContext/findGeneration, and the stored objects. Read-only: every
// route is GET or HEAD, and nothing here writes to the database or the storage (local
// storage's head may rebuild a stale sidecar, its own etag cache, as it does for any reader).
import { createHash, timingSafeEqual } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pipeline } from "node:stream/promises";
import pLimit from "p-limit";
import { contentTypeFor } from "../core/keys.ts";
import { createStaleCache } from "../core/stale-cache.ts";
import type { Database } from "../db/client.ts";
import { StorageError, UserError } from "../errors.ts";
import { boundAddress, listen } from "../listen.ts";
import type { GenerationRecord as Generation } from "../core/generation-table.ts";
import { countByContext, findGeneration, runList } from "../jobs/list.ts";
import { ObjectNotFoundError } from "../storage/errors.ts";
import type { Storage } from "../storage/types.ts";
import { countsKey, decideRange, parseFilters, parseMediaPath, parseTab } from "./request.ts";
import { mediaKindOf, storedKeysOf, toGenerationDetailView, toGenerationView } from "./view.ts";

export interface GalleryServerOptions {
  db: Database;
  storage: Storage;
  /** When set, every request must carry it (cookie, `Authorization: Bearer`, or `?token=` once). */
  token?: string;
  /** Rows per page (the page asks for more with the last row's id). */
  pageSize?: number;
  /** How long a presigned URL (S3) stays valid. */
  presignSeconds?: number;
  /**
   * How old the counts per tab may be before they are counted again (ms). Older ones, up to
   * five minutes, are still answered at once while a new count runs; 0 counts at every ask.
   */
  countsMaxAgeMs?: number;
  /** One line per failed request (5xx). */
  log?: (line: string) => void;
}

export interface GalleryServer {
  readonly server: http.Server;
  /** Starts listening; resolves with the base URL (http://host:port). */
  listen(port: number, host: string): Promise<string>;
  close(): Promise<void>;
}

export const DEFAULT_PAGE_SIZE = 60;
export const DEFAULT_COUNTS_MAX_AGE_MS = 10_000;
/** Counts older than this are never answered: the ask waits for a new count. */
const COUNTS_MAX_STALE_MS = 5 * 60_000;
/** Filter sets whose counts are kept. */
const COUNTS_KEPT = 200;
const TOKEN_COOKIE = "genstore_gallery_token";
/** Stored objects checked at once when a page tells which keys are missing. */
const PARALLEL_HEADS = 16;
const STATIC_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
}

export async function createGalleryServer(options: GalleryServerOptions): Promise<GalleryServer> {
  const { db, storage } = options;
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const presignSeconds = options.presignSeconds ?? 900;
  const log = options.log ?? (() => {});
  const files = await loadStaticFiles();
  // Exact counts read every matching row (a second or more at a million rows), so they are
  // kept per filter set for a while, and say when they were counted. The key is the filters
  // as typed: a relative date ("24h") is measured again at each count.
  const countsMaxAgeMs = options.countsMaxAgeMs ?? DEFAULT_COUNTS_MAX_AGE_MS;
  const counts = createStaleCache(
    (key) => {
      const filters = parseFilters(new URLSearchParams(key));
      if (!filters.ok) throw new Error(`bad counts key ${key}: ${filters.message}`);
      return countByContext(filters.value, { db });
    },
    {
      freshMs: countsMaxAgeMs,
      maxStaleMs: countsMaxAgeMs === 0 ? 0 : COUNTS_MAX_STALE_MS,
      maxEntries: COUNTS_KEPT,
      onBackgroundError: (key, error) => log(`counting ${key || "all rows"} failed: ${oneLine(error)}`),
    },
  );
  // Presigned URLs point at the S3 endpoint: the page may load images and videos from there, nothing else.
  const probe = await storage.downloadUrl("genstore-gallery-csp-probe", { expiresInSeconds: 60 });
  const mediaSources = ["'self'", ...(probe ? [new URL(probe).origin] : [])].join(" ");
  const pageCsp = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src ${mediaSources}`,
    `media-src ${mediaSources}`,
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
  const tokenDigest = options.token === undefined ? undefined : sha256(options.token);
  let allowedHosts: Set<string> | undefined;
  const inFlight = new Set<Promise<void>>();

  const server = http.createServer((req, res) => {
    const handled = handle(req, res).catch((error: unknown) => {
      // The database or storage failing is said as it is (503); anything else is a bug (500).
      const expected = error instanceof UserError;
      log(`${expected ? 503 : 500} ${req.method} ${req.url}: ${oneLine(error)}`);
      if (res.headersSent) res.destroy();
      else if (expected) sendJson(res, 503, { error: error.message });
      else sendText(res, 500, "Internal error: see the gallery's terminal.");
    });
    inFlight.add(handled);
    void handled.finally(() => inFlight.delete(handled));
  });
  server.requestTimeout = 60_000;
  server.headersTimeout = 30_000;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    setSecurityHeaders(res, pageCsp);
    // A page on another site that rebinds its name to 127.0.0.1 sends its own name as Host.
    if (allowedHosts && !allowedHosts.has((req.headers.host ?? "").toLowerCase()))
      return sendText(res, 403, "Host not allowed: open the gallery at the address genstore printed.");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return sendText(res, 405, "The gallery is read-only: only GET and HEAD.");
    }
    const rawPath = (req.url ?? "/").split("?")[0]!;
    const url = new URL(req.url ?? "/", "http://gallery.invalid");
    if (tokenDigest !== undefined && !authorized(req, url, res)) return;

    if (rawPath === "/" || rawPath === "/index.html") return sendStatic(req, res, files.get("index.html")!);
    if (rawPath.startsWith("/static/")) {
      const file = files.get(rawPath.slice("/static/".length));
      return file ? sendStatic(req, res, file) : sendText(res, 404, "Not found.");
    }
    if (rawPath === "/api/generations") return apiPage(res, url.searchParams);
    if (rawPath === "/api/counts") return apiCounts(res, url.searchParams);
    if (rawPath.startsWith("/api/generations/")) {
      const id = decodeSegment(rawPath.slice("/api/generations/".length));
      return id === undefined ? sendJson(res, 404, { error: "not found" }) : apiDetail(res, id);
    }
    if (rawPath.startsWith("/media/")) return media(req, res, rawPath);
    return sendText(res, 404, "Not found.");
  }

  /** The token from a cookie, a bearer header, or ?token= (which sets the cookie and redirects it away). */
  function authorized(req: http.IncomingMessage, url: URL, res: http.ServerResponse): boolean {
    const fromQuery = url.searchParams.get("token");
    if (fromQuery !== null && tokenMatches(fromQuery)) {
      url.searchParams.delete("token");
      res.setHeader(
        "set-cookie",
        `${TOKEN_COOKIE}=${encodeURIComponent(fromQuery)}; HttpOnly; SameSite=Strict; Path=/`,
      );
      res.setHeader("location", `${url.pathname}${url.search}`);
      sendText(res, 303, "Signed in.");
      return false;
    }
    const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? "")?.[1];
    const cookie = cookieValue(req.headers.cookie, TOKEN_COOKIE);
    if ((bearer !== undefined && tokenMatches(bearer)) || (cookie !== undefined && tokenMatches(cookie))) return true;
    sendText(res, 401, "This gallery needs its token: open the URL that `genstore gallery` printed.");
    return false;
  }

  function tokenMatches(given: string): boolean {
    // Digests have one length, so the comparison takes the same time whatever was sent.
    return timingSafeEqual(sha256(given), tokenDigest!);
  }

  async function apiPage(res: http.ServerResponse, query: URLSearchParams): Promise<void> {
    const filters = parseFilters(query);
    const tab = parseTab(query);
    if (!filters.ok) return sendJson(res, 400, { error: filters.message });
    if (!tab.ok) return sendJson(res, 400, { error: tab.message });
    const after = query.get("after") || undefined;
    const started = performance.now();
    let page;
    try {
      page = await runList({ ...filters.value, context: tab.value, after, limit: pageSize }, { db });
    } catch (error) {
      if (error instanceof UserError && !(error instanceof StorageError))
        return sendJson(res, 400, { error: error.message });
      throw error;
    }
    const listed = performance.now();
    const missing = await missingKeys(page.rows);
    const checked = performance.now();
    res.setHeader(
      "server-timing",
      `db;dur=${(listed - started).toFixed(1)}, storage;dur=${(checked - listed).toFixed(1)}`,
    );
    sendJson(res, 200, { items: page.rows.map((row) => toGenerationView(row, missing)), next: page.next ?? null });
  }

  async function apiCounts(res: http.ServerResponse, query: URLSearchParams): Promise<void> {
    const filters = parseFilters(query);
    if (!filters.ok) return sendJson(res, 400, { error: filters.message });
    const started = performance.now();
    const cached = await counts.get(countsKey(query));
    res.setHeader("server-timing", `db;dur=${(performance.now() - started).toFixed(1)}, cache;desc=${cached.source}`);
    const ageSeconds = Math.max(0, Math.floor((Date.now() - cached.computedAt) / 1000));
    sendJson(res, 200, { ...cached.value, asOf: new Date(cached.computedAt).toISOString(), ageSeconds });
  }

  async function apiDetail(res: http.ServerResponse, id: string): Promise<void> {
    const row = await findGeneration(id, { db });
    if (!row) return sendJson(res, 404, { error: `no generation has id ${JSON.stringify(id)}` });
    sendJson(res, 200, toGenerationDetailView(row, await missingKeys([row])));
  }

  /** The keys these rows list that storage does not hold. */
  async function missingKeys(rows: Generation[]): Promise<Set<string>> {
    const limit = pLimit(PARALLEL_HEADS);
    const keys = [...new Set(rows.flatMap(storedKeysOf))];
    const missing = new Set<string>();
    await Promise.all(
      keys.map((key) =>
        limit(async () => {
          if ((await headOrRefused(storage, key)) === undefined) missing.add(key);
        }),
      ),
    );
    return missing;
  }

  /** A stored object, only when the row named in the path lists its key. */
  async function media(req: http.IncomingMessage, res: http.ServerResponse, rawPath: string): Promise<void> {
    res.setHeader("content-security-policy", "default-src 'none'; sandbox");
    const target = parseMediaPath(rawPath);
    const row = target && (await findGeneration(target.id, { db }));
    if (!target || !row || !storedKeysOf(row).includes(target.key)) return sendText(res, 404, "Not found.");
    const { key } = target;
    const url = await storage.downloadUrl(key, { expiresInSeconds: presignSeconds });
    if (url !== undefined) {
      // The browser fetches the bytes from S3 itself, for a while, with ranges as it needs.
      res.setHeader("cache-control", `private, max-age=${Math.floor(presignSeconds / 3)}`);
      res.setHeader("location", url);
      return sendText(res, 302, "Found.");
    }
    const info = await headOrRefused(storage, key);
    if (info === undefined) return sendText(res, 404, "Not in storage.");
    const etag = `"${info.etag}"`;
    // Served by what the key's extension says, never by stored metadata: no object becomes a page.
    const type = mediaKindOf(key) === "other" ? undefined : contentTypeFor(key);
    res.setHeader("etag", etag);
    res.setHeader("cache-control", "private, no-cache");
    res.setHeader("accept-ranges", "bytes");
    if (info.lastModified) res.setHeader("last-modified", info.lastModified.toUTCString());
    res.setHeader("content-type", type ?? "application/octet-stream");
    if (type === undefined) res.setHeader("content-disposition", "attachment");
    if (etagMatches(req.headers["if-none-match"], etag)) {
      res.writeHead(304);
      res.end();
      return;
    }
    const ifRange = req.headers["if-range"];
    const range =
      ifRange === undefined || ifRange === etag
        ? decideRange(req.headers.range, info.size)
        : { kind: "whole" as const };
    if (range.kind === "unsatisfiable") {
      res.setHeader("content-range", `bytes */${info.size}`);
      return sendText(res, 416, "Range not satisfiable.");
    }
    const status = range.kind === "partial" ? 206 : 200;
    const [start, end] = range.kind === "partial" ? [range.start, range.end] : [0, info.size - 1];
    if (range.kind === "partial") res.setHeader("content-range", `bytes ${start}-${end}/${info.size}`);
    res.setHeader("content-length", String(Math.max(0, end - start + 1)));
    res.writeHead(status);
    if (req.method === "HEAD" || info.size === 0) {
      res.end();
      return;
    }
    let body;
    try {
      body = await storage.get(key, range.kind === "partial" ? { range: { start, end } } : {});
    } catch (error) {
      if (error instanceof ObjectNotFoundError) return void res.destroy(); // deleted since the head
      throw error;
    }
    // A player that seeks drops its connection mid-body: that is no error of ours.
    await pipeline(body, res).catch(() => undefined);
  }

  return {
    server,
    async listen(port, host) {
      const base = await listen(server, port, host);
      // The first page asks for the counts of every row: they start now, not at its first ask.
      counts
        .get(countsKey(new URLSearchParams()))
        .catch((error: unknown) => log(`counting all rows failed: ${oneLine(error)}`));
      if (options.token === undefined) {
        // Host headers a browser on this machine sends (DNS rebinding gets none of them).
        const bound = boundAddress(server);
        allowedHosts = new Set(
          ["127.0.0.1", "localhost", "[::1]", bound.host].map((name) => `${name}:${bound.port}`.toLowerCase()),
        );
      }
      return base;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await Promise.allSettled([...inFlight]);
      await counts.idle();
      // Video players keep connections open; nothing in flight is worth waiting for.
      server.closeAllConnections();
      await closed;
    },
  };
}

/** head, with a key the storage refuses to look up (it could leave the root) taken as absent. */
async function headOrRefused(storage: Storage, key: string) {
  try {
    return await storage.head(key);
  } catch (error) {
    if (error instanceof StorageError && error.message.startsWith("Refusing storage key")) return undefined;
    throw error;
  }
}

async function loadStaticFiles(): Promise<Map<string, StaticFile>> {
  // Beside this module in the sources; the build copies the folder beside the bundle's chunks.
  const dir = fileURLToPath(new URL("./static/", import.meta.url));
  const files = new Map<string, StaticFile>();
  for (const name of await readdir(dir)) {
    const type = STATIC_TYPES[path.extname(name)];
    if (type === undefined) continue;
    const body = await readFile(path.join(dir, name));
    files.set(name, { body, type, etag: `"${createHash("sha256").update(body).digest("hex").slice(0, 32)}"` });
  }
  return files;
}

function setSecurityHeaders(res: http.ServerResponse, csp: string): void {
  res.setHeader("content-security-policy", csp);
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("referrer-policy", "no-referrer");
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("cross-origin-opener-policy", "same-origin");
  res.setHeader("cross-origin-resource-policy", "same-origin");
}

function sendStatic(req: http.IncomingMessage, res: http.ServerResponse, file: StaticFile): void {
  res.setHeader("etag", file.etag);
  res.setHeader("cache-control", "no-cache");
  if (etagMatches(req.headers["if-none-match"], file.etag)) {
    res.writeHead(304);
    res.end();
    return;
  }
  res.writeHead(200, { "content-type": file.type, "content-length": file.body.byteLength });
  res.end(req.method === "HEAD" ? undefined : file.body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(res.req.method === "HEAD" ? undefined : text);
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  if (!res.hasHeader("cache-control")) res.setHeader("cache-control", "no-store");
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(res.req.method === "HEAD" ? undefined : text);
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === etag || t === `W/${etag}`;
  });
}

function decodeSegment(raw: string): string | undefined {
  try {
    const value = decodeURIComponent(raw);
    return value === "" || value.includes("/") ? undefined : value;
  } catch {
    return undefined;
  }
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) {
      try {
        return decodeURIComponent(value.join("="));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}
