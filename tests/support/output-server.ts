// A stand-in for replicate.delivery, owned by the tests: an HTTP server on 127.0.0.1 only,
// closed by close() (every open socket destroyed) or by itself after `lifetimeMs`, so a
// forgotten server never keeps a test run alive.
//
//   const server = await startOutputServer();
//   onTestFinished(() => server.close());
//   const config = { outputHosts: [server.hostEntry], maxOutputBytes: 10 * MiB };
//   const url = server.url("/png/out-0.png");
//
// hostEntry is "127.0.0.1:<port>", the GENSTORE_OUTPUT_HOSTS entry that admits it (an
// explicit host:port entry is the only way http and a loopback address are allowed).
//
// Built-in paths (the last segment is free, so URLs can end in the extension a test needs;
// <key> is any word: counters are per path):
//   /png/<name>                  a 640×480 PNG (sharp)          server.bytes.png
//   /jpeg/<name>                 a 1024×768 JPEG (sharp)        server.bytes.jpeg
//   /mp4/<name>                  a few bytes that start like an MP4 (not a playable video)
//   /bytes/<n>/<name>            n bytes, generated while sending (never held in memory),
//                                with Content-Length; an MP4 signature, then byte i is
//                                (i * 31 + 7) & 0xff (see generatedBytes)
//   /chunked/<n>/<name>          the same without Content-Length (chunked encoding)
//   /status/<code>/<name>        that status, empty body
//   /flaky/<k>/<code>/<name>     <code> for the first k requests of this path, then the PNG
//   /throttle/<s>/<name>         429 with Retry-After: <s> for the first request, then the PNG
//   /redirect/<name>?to=<url>    302 to <url> (relative or absolute)
//   /redirect-loop/<name>        302 to itself, forever
//   /stall/<n>/<name>            Content-Length n+1000, sends n bytes, then goes silent
//   /no-headers/<name>           accepts the request and never answers
//   /short/<claimed>/<sent>/<name>  Content-Length <claimed>, sends <sent> bytes, closes the socket
// Anything else is 404. route(path, handler) adds or overrides an exact path.
// `requests` records every request (method, path, time) in arrival order.
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import sharp from "sharp";

export interface OutputServer {
  /** http://127.0.0.1:<port> */
  baseUrl: string;
  port: number;
  /** The GENSTORE_OUTPUT_HOSTS entry that admits this server: "127.0.0.1:<port>". */
  hostEntry: string;
  /** The full URL of a path on this server. */
  url(path: string): string;
  /** The fixed bodies served by /png, /jpeg and /mp4. */
  bytes: { png: Buffer; jpeg: Buffer; mp4: Buffer };
  requests: Array<{ method: string; path: string; at: number }>;
  /** Requests whose path starts with prefix. */
  count(prefix: string): number;
  route(path: string, handler: http.RequestListener): void;
  close(): Promise<void>;
}

export interface OutputServerOptions {
  /** The server closes itself after this long (default 10 min: longer than any test may run, see vitest.config.ts). */
  lifetimeMs?: number;
}

/** The first bytes of every generated body: an MP4 `ftyp` box, so the pipeline's sniffing takes it for a video. */
const SIGNATURE = Buffer.from("000000186674797069736f6d", "hex");

/** Byte i of the generated bodies of /bytes and /chunked. */
export function generatedByte(i: number): number {
  return i < SIGNATURE.length ? SIGNATURE[i]! : (i * 31 + 7) & 0xff;
}

const CHUNK = 64 * 1024;

/** One 64 KiB pattern block; a body is this block repeated (the pattern has period 256, CHUNK is a multiple). */
const PATTERN = Buffer.from(Array.from({ length: CHUNK }, (_, i) => (i * 31 + 7) & 0xff));
/** The first block: PATTERN with the signature in front. */
const FIRST = Buffer.from(Array.from({ length: CHUNK }, (_, i) => generatedByte(i)));

/** The first n bytes of a generated body (for small comparisons in tests). */
export function generatedBytes(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = generatedByte(i);
  return out;
}

let fixtures: Promise<OutputServer["bytes"]> | undefined;

function makeFixtures(): Promise<OutputServer["bytes"]> {
  fixtures ??= (async () => {
    const image = (width: number, height: number) =>
      sharp({ create: { width, height, channels: 3, background: { r: 200, g: 60, b: 30 } } });
    const [png, jpeg] = await Promise.all([image(640, 480).png().toBuffer(), image(1024, 768).jpeg().toBuffer()]);
    // ftyp box of an ISO BMFF file, then padding: enough for content sniffers, not a video.
    const mp4 = Buffer.concat([
      Buffer.from([0, 0, 0, 0x18]),
      Buffer.from("ftypisom"),
      Buffer.alloc(12),
      Buffer.alloc(4096, 1),
    ]);
    return { png, jpeg, mp4 };
  })();
  return fixtures;
}

export async function startOutputServer(options: OutputServerOptions = {}): Promise<OutputServer> {
  const bytes = await makeFixtures();
  const requests: OutputServer["requests"] = [];
  const routes = new Map<string, http.RequestListener>();
  const perPath = new Map<string, number>();
  const sockets = new Set<Socket>();

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    requests.push({ method: req.method ?? "GET", path: url.pathname + url.search, at: Date.now() });
    const seen = (perPath.get(url.pathname) ?? 0) + 1;
    perPath.set(url.pathname, seen);
    const custom = routes.get(url.pathname);
    if (custom) return custom(req, res);
    serveBuiltIn(url, seen, res, bytes);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolve) => {
      clearTimeout(lifetime);
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
    return closing;
  };
  const lifetime = setTimeout(() => void close(), options.lifetimeMs ?? 600_000);
  lifetime.unref();

  return {
    baseUrl,
    port,
    hostEntry: `127.0.0.1:${port}`,
    url: (path) => new URL(path, baseUrl).toString(),
    bytes,
    requests,
    count: (prefix) => requests.filter((r) => r.path.startsWith(prefix)).length,
    route: (path, handler) => void routes.set(path, handler),
    close,
  };
}

function serveBuiltIn(url: URL, seen: number, res: http.ServerResponse, bytes: OutputServer["bytes"]): void {
  const parts = url.pathname.split("/").slice(1);
  const [kind, a, b, c] = parts;
  const n = (value: string | undefined) => (value !== undefined && /^\d+$/.test(value) ? Number(value) : NaN);
  const send = (status: number, body: Buffer, type: string, headers: http.OutgoingHttpHeaders = {}) => {
    res.writeHead(status, { "content-type": type, "content-length": body.length, ...headers });
    res.end(body);
  };
  switch (kind) {
    case "png":
      return send(200, bytes.png, "image/png");
    case "jpeg":
      return send(200, bytes.jpeg, "image/jpeg");
    case "mp4":
      return send(200, bytes.mp4, "video/mp4");
    case "bytes":
    case "chunked": {
      const size = n(a);
      if (Number.isNaN(size)) break;
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        ...(kind === "bytes" ? { "content-length": size } : {}),
      });
      return streamGenerated(res, size);
    }
    case "status": {
      const status = n(a);
      if (Number.isNaN(status)) break;
      res.writeHead(status, { "content-length": 0 });
      return void res.end();
    }
    case "flaky": {
      const failures = n(a);
      const status = n(b);
      if (Number.isNaN(failures) || Number.isNaN(status) || c === undefined) break;
      if (seen <= failures) {
        res.writeHead(status, { "content-length": 0 });
        return void res.end();
      }
      return send(200, bytes.png, "image/png");
    }
    case "throttle": {
      const seconds = n(a);
      if (Number.isNaN(seconds)) break;
      if (seen === 1)
        return send(429, Buffer.from('{"detail":"Request was throttled."}'), "application/json", {
          "retry-after": String(seconds),
        });
      return send(200, bytes.png, "image/png");
    }
    case "redirect": {
      const to = url.searchParams.get("to");
      if (!to) break;
      res.writeHead(302, { location: to, "content-length": 0 });
      return void res.end();
    }
    case "redirect-loop":
      res.writeHead(302, { location: url.pathname, "content-length": 0 });
      return void res.end();
    case "stall": {
      const sent = n(a);
      if (Number.isNaN(sent)) break;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": sent + 1000 });
      res.write(generatedBytes(sent));
      return; // silent until the client gives up or the server closes
    }
    case "no-headers":
      return; // never answers
    case "short": {
      const claimed = n(a);
      const sent = n(b);
      if (Number.isNaN(claimed) || Number.isNaN(sent)) break;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": claimed });
      res.write(generatedBytes(sent), () => res.socket?.destroy());
      return;
    }
  }
  res.writeHead(404, { "content-length": 0 });
  res.end();
}

/** Writes `size` generated bytes, respecting backpressure: memory holds one 64 KiB block. */
function streamGenerated(res: http.ServerResponse, total: number): void {
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const length = Math.min(CHUNK, total - sent);
      // PATTERN's period (256) divides CHUNK, so every block starts at pattern offset 0.
      const block = sent === 0 ? FIRST : PATTERN;
      const ok = res.write(length === CHUNK ? block : block.subarray(0, length));
      sent += length;
      if (!ok) return void res.once("drain", pump);
    }
    res.end();
  };
  res.on("close", () => res.removeAllListeners("drain"));
  pump();
}
