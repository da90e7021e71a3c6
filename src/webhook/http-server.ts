// The HTTP side of `serve-webhook`: POST /api/webhooks/replicate, GET /healthz and GET
// /metrics (Prometheus; behind a bearer token beyond loopback) on node:http. It reads the body with a limit, hands it to acceptDelivery (verify, parse,
// enqueue durably) and answers; the worker does the slow part after the 2xx.
//
// A sender without the secret must not be able to make the receiver hold memory: what the
// headers alone decide (no webhook-* headers, a stale timestamp, a declared length over the
// limit) is answered before the body is read, and before any `100 Continue`; the bodies held
// at once, across all requests, are capped (over the cap: 503 with Retry-After). An answer
// sent before the whole body arrived closes the connection the way RFC 9112 §9.6 asks: the
// response, then a half-close, then the rest of the body read and dropped until the client
// closes (or LINGER_MS), so that the client reads the answer instead of a reset.
import { createHash, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { Socket } from "node:net";
import { listen } from "../listen.ts";
import { StringDecoder } from "node:string_decoder";
import type { ReceiverMetrics } from "./metrics.ts";
import type { DeliveryQueue } from "./queue.ts";
import type { WorkerHealth } from "./worker.ts";
import {
  MAX_BODY_BYTES,
  acceptDelivery,
  formatBytes,
  precheckDelivery,
  WEBHOOK_PATH,
  type AcceptResult,
} from "./accept-delivery.ts";

export type ServerLogLevel = "debug" | "info" | "warn" | "error";

/** Body bytes held at once across all requests: four of the largest bodies, about 40 MiB. */
export const MAX_BUFFERED_BYTES = 4 * MAX_BODY_BYTES;
/** How long a connection answered early keeps being read (and dropped) after the answer. */
const LINGER_MS = 5_000;

export interface WebhookServerOptions {
  queue: DeliveryQueue;
  /** Required unless insecureNoVerify. */
  secret?: string;
  insecureNoVerify?: boolean;
  maxBodyBytes?: number;
  /** Body bytes held in memory at once across all requests (default MAX_BUFFERED_BYTES); over it, 503. */
  maxBufferedBytes?: number;
  /** The worker's health, reported by GET /healthz (unhealthy: 503). */
  workerHealth?: () => WorkerHealth;
  /** Called after a delivery is durable (wakes the worker). */
  onAccepted?: (accepted: NonNullable<AcceptResult["accepted"]>) => void;
  /** One line per request refused (warn), duplicate (info) or accepted (debug: the worker logs the outcome). */
  log?: (line: string, level: ServerLogLevel) => void;
  now?: () => Date;
  /** Counts requests and answers; GET /metrics serves it (without it, /metrics is a 404). */
  metrics?: ReceiverMetrics;
  /** When set, GET /metrics needs `Authorization: Bearer <token>` (a server beyond loopback). */
  metricsToken?: string;
}

export interface WebhookServer {
  readonly server: http.Server;
  /** Starts listening; resolves with the base URL (http://host:port). */
  listen(port: number, host: string): Promise<string>;
  /** Stops accepting, lets in-flight requests finish, then closes every connection. */
  close(): Promise<void>;
  /** Body bytes held right now (tests). */
  bufferedBytes(): number;
}

export function createWebhookServer(options: WebhookServerOptions): WebhookServer {
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const budget = createBodyBudget(Math.max(options.maxBufferedBytes ?? MAX_BUFFERED_BYTES, maxBodyBytes));
  const log = options.log ?? (() => {});
  const inFlight = new Set<Promise<void>>();

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const handled = handle(req, res).catch((error) => {
      log(`500 ${req.method} ${req.url}: ${error instanceof Error ? error.message : String(error)}`, "error");
      if (!res.headersSent) send(res, 500, { error: "internal error" });
      else res.destroy();
    });
    inFlight.add(handled);
    void handled.finally(() => inFlight.delete(handled));
  };
  const server = http.createServer(onRequest);
  // With this listener node:http no longer answers `Expect: 100-continue` by itself: handle()
  // sends the 100 only once the headers and the declared length passed.
  server.on("checkContinue", onRequest);
  // A slow or stuck sender cannot hold a connection for long; Replicate sends at once.
  server.requestTimeout = 60_000;
  server.headersTimeout = 30_000;

  const metrics = options.metrics;
  const tokenDigest = options.metricsToken === undefined ? undefined : sha256(options.metricsToken);
  /** The answer to a webhook POST, counted. */
  const answered = (status: number, duplicate?: boolean) => metrics?.answered(status, duplicate);

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://receiver.invalid");
    if (url.pathname === "/healthz") {
      if (req.method !== "GET" && req.method !== "HEAD")
        return send(res, 405, { error: "use GET" }, { allow: "GET, HEAD" });
      try {
        const health = await options.queue.health();
        const worker = options.workerHealth?.();
        if (worker && !worker.ok) return send(res, 503, { ok: false, ...health, worker });
        return send(res, 200, { ok: true, ...health, ...(worker ? { worker } : {}) });
      } catch (error) {
        return send(res, 503, { ok: false, error: `database unavailable: ${oneLine(error)}` });
      }
    }
    if (url.pathname === "/metrics" && metrics) {
      if (req.method !== "GET" && req.method !== "HEAD")
        return send(res, 405, { error: "use GET" }, { allow: "GET, HEAD" });
      if (tokenDigest !== undefined && !bearerMatches(req.headers.authorization, tokenDigest))
        return send(
          res,
          401,
          { error: "GET /metrics needs Authorization: Bearer <token>" },
          {
            "www-authenticate": 'Bearer realm="genstore metrics"',
          },
        );
      const queue = await options.queue.health().catch(() => undefined);
      const text = metrics.render(queue);
      res.writeHead(200, {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
        "content-length": Buffer.byteLength(text),
      });
      return void res.end(req.method === "HEAD" ? undefined : text);
    }
    if (url.pathname !== WEBHOOK_PATH) {
      log(`404 ${req.method} ${url.pathname}`, "warn");
      return send(res, 404, { error: `not found; Replicate webhooks go to POST ${WEBHOOK_PATH}` });
    }
    if (req.method !== "POST") {
      log(`405 ${req.method} ${url.pathname}`, "warn");
      return send(res, 405, { error: "use POST" }, { allow: "POST" });
    }

    metrics?.received();
    const declared = declaredLength(req);
    const early = precheckDelivery({
      headers: req.headers,
      contentLength: declared,
      maxBodyBytes,
      secret: options.secret,
      insecureNoVerify: options.insecureNoVerify,
      now: options.now?.(),
    });
    if (early) {
      log(early.line, "warn");
      answered(early.status);
      return answerBeforeBody(req, res, early.status, early.body);
    }
    const held = budget.reserve(declared ?? 0);
    if (!held) return busy(req, res);
    let reserved = declared ?? 0;
    try {
      if (/100-continue/i.test(req.headers.expect ?? "")) res.writeContinue();
      const body = await readBody(req, maxBodyBytes, declared === undefined ? budget : undefined);
      reserved += body.extraReserved;
      if (body.outcome === "too-large") {
        log(`413 body over ${formatBytes(maxBodyBytes)}`, "warn");
        answered(413);
        return answerBeforeBody(req, res, 413, { error: `body over ${formatBytes(maxBodyBytes)}` });
      }
      if (body.outcome === "busy") return busy(req, res);
      if (body.outcome === "aborted") return;

      const result = await acceptDelivery({
        body: body.text,
        headers: req.headers,
        query: url.searchParams,
        secret: options.secret,
        insecureNoVerify: options.insecureNoVerify,
        queue: options.queue,
        now: options.now?.(),
      });
      // An accepted delivery's line comes from the worker once it is ingested; a duplicate gets none there.
      log(
        result.line,
        result.status === 200
          ? result.accepted?.duplicate
            ? "info"
            : "debug"
          : result.status === 503
            ? "error"
            : "warn",
      );
      answered(result.status, result.accepted?.duplicate);
      send(res, result.status, result.body, result.status === 503 ? { "retry-after": "5" } : {});
      if (result.accepted) options.onAccepted?.(result.accepted);
    } finally {
      budget.release(reserved);
    }
  }

  function busy(req: http.IncomingMessage, res: http.ServerResponse): void {
    log(`503 over ${formatBytes(budget.limit)} of bodies in memory: try again later`, "warn");
    answered(503);
    answerBeforeBody(
      req,
      res,
      503,
      { error: "the receiver is holding too many bodies at once; retry later" },
      { "retry-after": "5" },
    );
  }

  return {
    server,
    listen: (port, host) => listen(server, port, host),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await Promise.allSettled([...inFlight]);
      server.closeIdleConnections();
      // Keep-alive connections that are mid-request get a few seconds, then are cut.
      const force = setTimeout(() => server.closeAllConnections(), 5_000);
      force.unref();
      await closed;
      clearTimeout(force);
    },
    bufferedBytes: () => budget.used,
  };
}

/** The bytes of request bodies held at once, across requests. */
interface BodyBudget {
  readonly limit: number;
  readonly used: number;
  /** Takes bytes from the budget; false (and nothing taken) when they do not fit. */
  reserve(bytes: number): boolean;
  release(bytes: number): void;
}

function createBodyBudget(limit: number): BodyBudget {
  let used = 0;
  return {
    limit,
    get used() {
      return used;
    },
    reserve(bytes) {
      if (used + bytes > limit) return false;
      used += bytes;
      return true;
    },
    release(bytes) {
      used -= bytes;
    },
  };
}

/** Content-Length as a number, or undefined when absent (chunked) or unreadable. */
function declaredLength(req: http.IncomingMessage): number | undefined {
  const value = req.headers["content-length"];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

type BodyRead =
  { outcome: "read"; text: string } | { outcome: "too-large" } | { outcome: "busy" } | { outcome: "aborted" };

/**
 * The body as UTF-8 text, decoded chunk by chunk (no second copy of it as one buffer), or
 * "too-large" as soon as it passes the limit, or "busy" when a chunk of a body of unknown
 * length does not fit the budget; the rest is not read then. extraReserved is what was taken
 * from the budget here (bodies of unknown length); the caller gives it back.
 */
function readBody(
  req: http.IncomingMessage,
  limit: number,
  budget: BodyBudget | undefined,
): Promise<BodyRead & { extraReserved: number }> {
  return new Promise((resolve) => {
    const decoder = new StringDecoder("utf8");
    let text = "";
    let size = 0;
    let extraReserved = 0;
    const finish = (value: BodyRead) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAbort);
      req.off("aborted", onAbort);
      if (value.outcome !== "read") req.pause();
      resolve({ ...value, extraReserved });
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return finish({ outcome: "too-large" });
      if (budget) {
        if (!budget.reserve(chunk.length)) return finish({ outcome: "busy" });
        extraReserved += chunk.length;
      }
      text += decoder.write(chunk);
    };
    const onEnd = () => finish({ outcome: "read", text: text + decoder.end() });
    const onAbort = () => finish({ outcome: "aborted" });
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAbort);
    req.on("aborted", onAbort);
  });
}

/**
 * Answers a request whose body was not (all) read, and closes its connection without losing
 * the answer: node:http would end a `Connection: close` answer with socket.destroySoon(),
 * which closes both ways as soon as the answer is written; the client, still sending, then
 * gets a reset that can destroy the answer before it reads it. Instead: half-close after the
 * answer, keep reading and dropping what the client still sends, and close when it does, or
 * after LINGER_MS (RFC 9112 §9.6).
 */
function answerBeforeBody(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const socket = req.socket;
  lingerOnClose(socket);
  // Whatever arrives from now on is read and dropped (nothing holds it).
  req.on("data", () => {});
  req.resume();
  send(res, status, body, { ...headers, connection: "close" });
}

function lingerOnClose(socket: Socket): void {
  const lingering = socket as Socket & { lingering?: boolean };
  if (lingering.lingering) return;
  lingering.lingering = true;
  socket.destroySoon = function lingeringClose(this: Socket) {
    if (this.writable) this.end();
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once("close", () => clearTimeout(timer));
    this.once("end", () => this.destroy());
    this.on("error", () => this.destroy());
    this.resume();
  };
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(res.req.method === "HEAD" ? undefined : text);
}

/** A bearer token compared in constant time (by digest, so lengths do not leak either). */
function bearerMatches(header: string | undefined, digest: Buffer): boolean {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
  return given !== undefined && timingSafeEqual(sha256(given), digest);
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}
