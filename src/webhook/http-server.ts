// The HTTP side of `serve-webhook`: POST /api/webhooks/replicate and GET /healthz on
// node:http. It reads the body with a limit, hands it to acceptDelivery (verify, parse,
// enqueue durably) and answers; the worker does the slow part after the 2xx.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { DeliveryQueue } from "./queue.ts";
import { MAX_BODY_BYTES, acceptDelivery, WEBHOOK_PATH, type AcceptResult } from "./accept-delivery.ts";

export type ServerLogLevel = "debug" | "info" | "warn" | "error";

export interface WebhookServerOptions {
  queue: DeliveryQueue;
  /** Required unless insecureNoVerify. */
  secret?: string;
  insecureNoVerify?: boolean;
  maxBodyBytes?: number;
  /** Called after a delivery is durable (wakes the worker). */
  onAccepted?: (accepted: NonNullable<AcceptResult["accepted"]>) => void;
  /** One line per request refused (warn), duplicate (info) or accepted (debug: the worker logs the outcome). */
  log?: (line: string, level: ServerLogLevel) => void;
  now?: () => Date;
}

export interface WebhookServer {
  readonly server: http.Server;
  /** Starts listening; resolves with the base URL (http://host:port). */
  listen(port: number, host: string): Promise<string>;
  /** Stops accepting, lets in-flight requests finish, then closes every connection. */
  close(): Promise<void>;
}

export function createWebhookServer(options: WebhookServerOptions): WebhookServer {
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const log = options.log ?? (() => {});
  const inFlight = new Set<Promise<void>>();

  const server = http.createServer((req, res) => {
    const handled = handle(req, res).catch((error) => {
      log(`500 ${req.method} ${req.url}: ${error instanceof Error ? error.message : String(error)}`, "error");
      if (!res.headersSent) send(res, 500, { error: "internal error" });
      else res.destroy();
    });
    inFlight.add(handled);
    void handled.finally(() => inFlight.delete(handled));
  });
  // A slow or stuck sender cannot hold a connection for long; Replicate sends at once.
  server.requestTimeout = 60_000;
  server.headersTimeout = 30_000;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://receiver.invalid");
    if (url.pathname === "/healthz") {
      if (req.method !== "GET" && req.method !== "HEAD")
        return send(res, 405, { error: "use GET" }, { allow: "GET, HEAD" });
      try {
        const counts = await options.queue.counts();
        return send(res, 200, { ok: true, ...counts });
      } catch (error) {
        return send(res, 503, { ok: false, error: `database unavailable: ${oneLine(error)}` });
      }
    }
    if (url.pathname !== WEBHOOK_PATH) {
      log(`404 ${req.method} ${url.pathname}`, "warn");
      return send(res, 404, { error: `not found; Replicate webhooks go to POST ${WEBHOOK_PATH}` });
    }
    if (req.method !== "POST") {
      log(`405 ${req.method} ${url.pathname}`, "warn");
      return send(res, 405, { error: "use POST" }, { allow: "POST" });
    }

    const body = await readBody(req, maxBodyBytes);
    if (body === "too-large") {
      log(`413 body over ${formatBytes(maxBodyBytes)}`, "warn");
      // Stop reading: answer, then close the connection (its unread rest is never read).
      return send(res, 413, { error: `body over ${formatBytes(maxBodyBytes)}` }, { connection: "close" });
    }
    if (body === "aborted") return;

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
    send(res, result.status, result.body, result.status === 503 ? { "retry-after": "5" } : {});
    if (result.accepted) options.onAccepted?.(result.accepted);
  }

  return {
    server,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        server.once("error", onError);
        server.listen(port, host, () => {
          server.off("error", onError);
          const address = server.address() as AddressInfo;
          const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
          resolve(`http://${shown}:${address.port}`);
        });
      });
    },
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
  };
}

/** The body as UTF-8 text; "too-large" as soon as it passes the limit (the rest is not read). */
type BodyRead = { text: string } | "too-large" | "aborted";

function readBody(req: http.IncomingMessage, limit: number): Promise<BodyRead> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve("too-large");
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (value: BodyRead) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAbort);
      req.off("aborted", onAbort);
      resolve(value);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish("too-large");
      } else chunks.push(chunk);
    };
    const onEnd = () => finish({ text: Buffer.concat(chunks, size).toString("utf8") });
    const onAbort = () => finish("aborted");
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAbort);
    req.on("aborted", onAbort);
  });
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(res.req.method === "HEAD" ? undefined : text);
  if (headers.connection === "close") res.once("finish", () => res.req.socket.destroySoon());
}

function formatBytes(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return Number.isInteger(mib) ? `${mib} MiB` : `${bytes} bytes`;
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}
