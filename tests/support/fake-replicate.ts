// A fake Replicate API for tests, speaking the HTTP API genstore uses: GET
// /v1/predictions/{id} and the paged GET /v1/predictions (newest first, `next` links), Bearer
// tokens, 429 with Retry-After. Loopback only, bounded (close() destroys open sockets), owned
// by the test that starts it.
//
//   const api = await startFakeReplicate({ token: "r8_test" });   // onTestFinished(api.close) is up to you
//   api.url                      "http://127.0.0.1:<port>/v1"  → REPLICATE_API_BASE_URL
//   api.token                    the Bearer token it accepts (anything else: 401)
//   api.add(fakePrediction({ id: "abc", output: [url] }))        store predictions (replaces same id)
//   api.update(id, { status: "succeeded", output: [...] })       change one
//   api.progress(id, { afterPolls: 2, then: { status: "succeeded", output: [...] } })
//                                the patch applies once GET /v1/predictions/{id} was answered K times
//   api.throttle(n, retryAfter?) the next n requests answer 429 {"detail":"Request was throttled…"}
//                                with Retry-After (seconds string or HTTP date; default "1")
//   api.fail(n, status = 503)    the next n requests answer that 5xx
//   api.dropConnections(n)       the next n requests have their socket destroyed (a network error)
//   api.pageSize = 100           results per page of GET /v1/predictions
//   api.requests                 every request: { method, path, query, authorized, status }
//   api.close()
//
// Routes: GET /v1/predictions/{id} → the prediction JSON, 404 {"detail":"Not found."} for an
// unknown id; GET /v1/predictions[?cursor=…] → { previous, next, results } newest first by
// created_at, `next`/`previous` absolute URLs with an opaque cursor (null at the ends).
// Anything else: 404. Scripted failures apply, in order, to the next requests of any route,
// before the token is checked (as a proxy or rate limiter in front would).
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

export type FakePrediction = Record<string, unknown> & { id: string; status: string; created_at: string };

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorized: boolean;
  status: number;
}

type Scripted = { kind: "status"; status: number; retryAfter?: string } | { kind: "drop" };

export interface FakeReplicate {
  readonly url: string;
  readonly origin: string;
  readonly token: string;
  pageSize: number;
  readonly requests: RecordedRequest[];
  add(...predictions: FakePrediction[]): void;
  update(id: string, patch: Partial<FakePrediction>): void;
  remove(id: string): void;
  get(id: string): FakePrediction | undefined;
  progress(id: string, step: { afterPolls: number; then: Partial<FakePrediction> }): void;
  throttle(n: number, retryAfter?: string): void;
  fail(n: number, status?: number): void;
  dropConnections(n: number): void;
  /** GETs of /v1/predictions/{id} answered 200 so far. */
  polls(id: string): number;
  close(): Promise<void>;
}

let sequence = 0;

/** A succeeded prediction shaped like GET /v1/predictions/{id}'s answer; override any field. */
export function fakePrediction(overrides: Partial<FakePrediction> = {}): FakePrediction {
  sequence += 1;
  const id = overrides.id ?? `p${Date.now().toString(36)}${sequence.toString(36).padStart(4, "0")}`.slice(0, 26);
  const created = overrides.created_at ?? new Date().toISOString();
  return {
    id,
    model: "black-forest-labs/flux-schnell",
    version: "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
    input: { prompt: "a red fox in snow" },
    logs: "",
    output: null,
    data_removed: false,
    error: null,
    status: "succeeded",
    source: "api",
    created_at: created,
    started_at: created,
    completed_at: overrides.status && overrides.status !== "succeeded" ? null : created,
    urls: {
      get: `https://api.replicate.com/v1/predictions/${id}`,
      cancel: `https://api.replicate.com/v1/predictions/${id}/cancel`,
    },
    metrics: { predict_time: 2.7, total_time: 4.0 },
    ...overrides,
  };
}

export async function startFakeReplicate(
  options: { token?: string; pageSize?: number; predictions?: FakePrediction[] } = {},
): Promise<FakeReplicate> {
  const token = options.token ?? "r8_fake_token";
  const predictions = new Map<string, FakePrediction>();
  const pollCounts = new Map<string, number>();
  const steps = new Map<string, { afterPolls: number; then: Partial<FakePrediction> }[]>();
  const script: Scripted[] = [];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  for (const p of options.predictions ?? []) predictions.set(p.id, p);

  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
    return status;
  };

  const newestFirst = () =>
    [...predictions.values()].sort((a, b) =>
      a.created_at === b.created_at ? (a.id < b.id ? 1 : -1) : a.created_at < b.created_at ? 1 : -1,
    );

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const record: RecordedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      authorized: req.headers.authorization === `Bearer ${token}`,
      status: 0,
    };
    requests.push(record);
    const scripted = script.shift();
    if (scripted?.kind === "drop") {
      record.status = -1;
      req.socket.destroy();
      return;
    }
    if (scripted?.kind === "status") {
      const headers: Record<string, string> =
        scripted.retryAfter !== undefined ? { "retry-after": scripted.retryAfter } : {};
      const detail =
        scripted.status === 429 ? "Request was throttled. Expected available in 1 second." : "Internal server error";
      record.status = json(
        res,
        scripted.status,
        { title: scripted.status === 429 ? "Too Many Requests" : "Server Error", detail, status: scripted.status },
        headers,
      );
      return;
    }
    if (!record.authorized) {
      record.status = json(res, 401, {
        title: "Unauthenticated",
        detail: "You did not pass a valid authentication token",
        status: 401,
      });
      return;
    }
    if (req.method !== "GET") {
      record.status = json(res, 405, { detail: `Method "${req.method}" not allowed.`, status: 405 });
      return;
    }
    const one = /^\/v1\/predictions\/([^/]+)$/.exec(url.pathname);
    if (one) {
      const id = decodeURIComponent(one[1]!);
      const found = predictions.get(id);
      if (!found) {
        record.status = json(res, 404, { title: "Not found", detail: "Not found.", status: 404 });
        return;
      }
      const n = (pollCounts.get(id) ?? 0) + 1;
      pollCounts.set(id, n);
      record.status = json(res, 200, found);
      // The state moves on after this answer: the (K+1)th poll sees the patch.
      for (const step of steps.get(id) ?? []) {
        if (n === step.afterPolls) predictions.set(id, { ...predictions.get(id)!, ...step.then });
      }
      return;
    }
    if (url.pathname === "/v1/predictions") {
      const all = newestFirst();
      const offset = decodeCursor(url.searchParams.get("cursor"));
      if (offset === undefined) {
        record.status = json(res, 400, { detail: "Invalid cursor.", status: 400 });
        return;
      }
      const size = api.pageSize;
      const page = all.slice(offset, offset + size);
      const link = (o: number) => `${origin}/v1/predictions?cursor=${encodeCursor(o)}`;
      record.status = json(res, 200, {
        previous: offset > 0 ? link(Math.max(0, offset - size)) : null,
        next: offset + size < all.length ? link(offset + size) : null,
        results: page,
      });
      return;
    }
    record.status = json(res, 404, { title: "Not found", detail: "Not found.", status: 404 });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.requestTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const api: FakeReplicate = {
    url: `${origin}/v1`,
    origin,
    token,
    pageSize: options.pageSize ?? 100,
    requests,
    add: (...list) => list.forEach((p) => predictions.set(p.id, p)),
    update: (id, patch) => {
      const found = predictions.get(id);
      if (!found) throw new Error(`fake Replicate: no prediction ${id}`);
      predictions.set(id, { ...found, ...patch });
    },
    remove: (id) => void predictions.delete(id),
    get: (id) => predictions.get(id),
    progress: (id, step) => steps.set(id, [...(steps.get(id) ?? []), step]),
    throttle: (n, retryAfter = "1") =>
      script.push(...Array.from({ length: n }, () => ({ kind: "status" as const, status: 429, retryAfter }))),
    fail: (n, status = 503) => script.push(...Array.from({ length: n }, () => ({ kind: "status" as const, status }))),
    dropConnections: (n) => script.push(...Array.from({ length: n }, () => ({ kind: "drop" as const }))),
    polls: (id) => pollCounts.get(id) ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return api;
}

function encodeCursor(offset: number): string {
  return Buffer.from(`o=${offset}`).toString("base64url");
}

function decodeCursor(cursor: string | null): number | undefined {
  if (cursor === null) return 0;
  const match = /^o=(\d+)$/.exec(Buffer.from(cursor, "base64url").toString());
  return match ? Number(match[1]) : undefined;
}
