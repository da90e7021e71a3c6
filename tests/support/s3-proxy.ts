import { buffer } from "node:stream/consumers";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { onTestFinished } from "vitest";

// A pass-through to moto_server on loopback that records every request and answers some of
// them itself, as servers without a feature (501 NotImplemented: OpenStack Swift's S3 API
// and If-None-Match, for one) or a failing server would. Closed when the test ends.

export interface ProxiedRequest {
  method: string;
  /** Path and query string, e.g. "/bucket/key?partNumber=2&uploadId=…". */
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface S3Answer {
  status: number;
  code: string;
  message?: string;
}

export const NOT_IMPLEMENTED: S3Answer = { status: 501, code: "NotImplemented", message: "Not supported here." };
export const ACCESS_DENIED: S3Answer = { status: 403, code: "AccessDenied", message: "Access Denied" };

export interface S3Proxy {
  url: string;
  requests: ProxiedRequest[];
  /** How many requests the proxy answered itself. */
  refused(): number;
}

/** Forwards to target, except the requests `answer` returns an answer for. */
export async function s3Proxy(
  target: string,
  answer: (req: ProxiedRequest) => S3Answer | undefined = () => undefined,
): Promise<S3Proxy> {
  let refused = 0;
  const requests: ProxiedRequest[] = [];
  const server = http.createServer(async (req, res) => {
    const body = await buffer(req);
    const seen = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers };
    requests.push(seen);
    const own = answer(seen);
    if (own) {
      refused++;
      res.writeHead(own.status, { "content-type": "application/xml" });
      res.end(
        `<?xml version='1.0' encoding='UTF-8'?><Error><Code>${own.code}</Code><Message>${own.message ?? own.code}</Message></Error>`,
      );
      return;
    }
    const upstream = await fetch(new URL(seen.url, target), {
      method: seen.method,
      headers: forwardable(req.headers),
      body: seen.method === "GET" || seen.method === "HEAD" ? undefined : body,
    });
    res.writeHead(upstream.status, forwardable(Object.fromEntries(upstream.headers)));
    res.end(Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, refused: () => refused };
}

/** The query parameters of a proxied request. */
export function queryOf(req: ProxiedRequest): URLSearchParams {
  return new URL(req.url, "http://proxy").searchParams;
}

const HOP_BY_HOP = new Set(["host", "connection", "keep-alive", "content-length", "transfer-encoding", "expect"]);

function forwardable(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).flatMap(([name, value]) =>
      value === undefined || HOP_BY_HOP.has(name) ? [] : [[name, String(value)]],
    ),
  );
}
