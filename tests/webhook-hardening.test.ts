import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import { createIngestProcessor } from "../src/webhook/ingest-delivery.ts";
import { createDeliveryQueue } from "../src/webhook/queue.ts";
import { createWebhookServer, type WebhookServerOptions } from "../src/webhook/http-server.ts";
import { createDeliveryWorker } from "../src/webhook/worker.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { createLocalStorage } from "../src/storage/local.ts";
import { createTestDatabase } from "./support/db.ts";
import { newSecret, post, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// The receiver against a sender that does not play by the rules: bodies it cannot sign,
// bodies that can never be stored, bodies too large for the limit. Real server on loopback,
// real embedded database.

const secret = newSecret();
const MiB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function receiver(options: Partial<WebhookServerOptions> = {}) {
  const { db } = await createTestDatabase("embedded");
  const queue = createDeliveryQueue(db);
  const lines: string[] = [];
  const server = createWebhookServer({ queue, secret, log: (line) => lines.push(line), ...options });
  const base = await server.listen(0, "127.0.0.1");
  closers.push(() => server.close());
  const rows = () => db.query<{ id: string }>(`SELECT id FROM "WebhookDelivery"`);
  return { server, db, queue, lines, rows, url: `${base}/api/webhooks/replicate`, port: Number(new URL(base).port) };
}

/** Sends the headers and the first part of a body, and waits for the answer without sending the rest. */
function answerBeforeTheRest(
  url: string,
  headers: Record<string, string>,
  declared: number,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; json: { error?: string } }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: "POST",
      agent: false,
      headers: { ...headers, "content-length": String(declared) },
    });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => (text += chunk.toString()));
      res.on("end", () => {
        resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(text) as { error?: string } });
        req.destroy();
      });
    });
    req.on("error", reject);
    req.write(Buffer.alloc(64 * 1024, "x"));
  });
}

/** A raw HTTP/1.1 exchange: what the server writes first after the headers. */
function firstBytesAfterHeaders(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(head));
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      if (received.includes("\r\n\r\n")) {
        socket.destroy();
        resolve(received);
      }
    });
    socket.on("error", reject);
  });
}

/**
 * Like curl: writes the whole request (size bytes of body, declared or chunked) before it
 * reads anything, then reads the answer. A server that closes while the client is still
 * sending makes the client's TCP stack reset the connection and drop the answer unread.
 * Resolves with the status line, or the error.
 */
function sendAllThenRead(
  port: number,
  headers: Record<string, string>,
  size: number,
  declared: boolean,
): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.pause();
    let received = "";
    let writeError: string | undefined;
    socket.on("data", (chunk) => (received += chunk.toString("latin1")));
    socket.on("error", (error: NodeJS.ErrnoException) => (writeError ??= error.code ?? error.message));
    socket.on("close", () => resolve(received.split("\r\n")[0] || writeError || "closed without an answer"));
    const head = [
      "POST /api/webhooks/replicate HTTP/1.1",
      "Host: 127.0.0.1",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      declared ? `Content-Length: ${size}` : "Transfer-Encoding: chunked",
      "",
      "",
    ].join("\r\n");
    const piece = Buffer.alloc(256 * 1024, "x");
    const frame = declared
      ? piece
      : Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")]);
    socket.write(head);
    let sent = 0;
    const write = (): void => {
      while (sent < size) {
        sent += piece.length;
        if (!socket.write(frame)) return void socket.once("drain", write);
      }
      if (!declared) socket.write("0\r\n\r\n");
      socket.resume();
    };
    write();
    // A server that stopped reading never drains the last writes: read anyway after a while.
    setTimeout(() => socket.resume(), 3_000).unref();
  });
}

/** Streams size bytes (chunked when declared is false) and resolves with the status it gets back, or the error. */
function streamBody(url: string, headers: Record<string, string>, size: number, declared: boolean): Promise<string> {
  return new Promise((resolve) => {
    let answered = false;
    const req = http.request(
      url,
      {
        method: "POST",
        agent: false,
        headers: declared ? { ...headers, "content-length": String(size) } : headers,
      },
      (res) => {
        answered = true;
        res.resume();
        res.on("end", () => resolve(String(res.statusCode)));
        res.on("error", () => resolve(String(res.statusCode)));
      },
    );
    // Once the answer is in, the rest of the upload may fail: the server stopped reading.
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (!answered) resolve(error.code ?? error.message);
    });
    let sent = 0;
    const chunk = Buffer.alloc(256 * 1024, "x");
    const write = () => {
      while (sent < size && !answered) {
        const piece = chunk.subarray(0, Math.min(chunk.length, size - sent));
        sent += piece.length;
        if (!req.write(piece)) return void req.once("drain", write);
      }
      req.end();
    };
    write();
  });
}

describe("a sender without the secret cannot make the receiver hold memory", () => {
  it.each([
    ["no webhook-* headers", {}, /missing webhook headers: webhook-id, webhook-timestamp, webhook-signature/],
    [
      "a timestamp an hour old",
      {
        "webhook-id": "msg_1",
        "webhook-timestamp": String(Math.floor(Date.now() / 1000) - 3600),
        "webhook-signature": "v1,abc",
      },
      /stale timestamp/,
    ],
  ])("answers 401 to %s before reading the body, and closes the connection", async (_, headers, reason) => {
    const r = await receiver();
    const reply = await answerBeforeTheRest(r.url, { "content-type": "application/json", ...headers }, 9 * MiB);
    expect(reply.status).toBe(401);
    expect(reply.json.error).toMatch(reason);
    expect(reply.headers.connection).toBe("close");
    expect(r.server.bufferedBytes()).toBe(0);
  });

  it("caps the bodies held at once across requests: 503 with Retry-After over the cap, then memory handed back", async () => {
    const r = await receiver({ maxBodyBytes: MiB, maxBufferedBytes: MiB + MiB / 2 });
    const body = JSON.stringify(samplePrediction({ logs: "x".repeat(MiB - 4096) }));
    const first = svixSigned(body, secret);
    // The first body is on its way (declared, half sent): the second does not fit beside it.
    const firstReply = new Promise<number>((resolve, reject) => {
      const req = http.request(r.url, {
        method: "POST",
        agent: false,
        headers: { ...first.headers, "content-length": String(Buffer.byteLength(body)) },
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on("error", reject);
      req.write(body.slice(0, 1000));
      void waitFor(() => r.server.bufferedBytes() > 0, 10_000, "the first body to be held").then(async () => {
        const second = svixSigned(body, secret);
        const secondReply = await post(r.url, body, second.headers);
        expect(secondReply.status).toBe(503);
        expect(secondReply.headers["retry-after"]).toBe("5");
        expect(secondReply.json.error).toMatch(/too many bodies at once; retry later/);
        // A body of unknown length (chunked) counts against the cap as it arrives.
        expect(await streamBody(r.url, svixSigned(body, secret).headers, Buffer.byteLength(body), false)).toBe("503");
        req.end(body.slice(1000));
      });
    });
    expect(await firstReply).toBe(200);
    await waitFor(() => r.server.bufferedBytes() === 0, 5_000, "the bodies to be released");
    expect(await r.rows()).toHaveLength(1);
  });
});

describe("a body that can never be stored gets 400, never 503", () => {
  const deep = (levels: number) => `${"[".repeat(levels)}1${"]".repeat(levels)}`;
  it.each([
    [
      "a number outside jsonb's range (1e200000)",
      () => JSON.stringify(samplePrediction()).replace('"predict_time":2.7', '"predict_time":1e200000'),
      undefined,
      /1e200000 is outside the range/,
    ],
    [
      "nesting 50,000 levels deep",
      () => JSON.stringify(samplePrediction({ input: { prompt: "x", n: "N" } })).replace('"N"', deep(50_000)),
      undefined,
      /nests deeper than 64 levels/,
    ],
    [
      "a prediction id of 2.8 KB",
      () => JSON.stringify(samplePrediction({ id: "p".repeat(2_800) })),
      undefined,
      /id: is 2800 bytes long/,
    ],
    [
      "a webhook-id of 2.8 KB",
      () => JSON.stringify(samplePrediction()),
      `msg_${"x".repeat(2_800)}`,
      /webhook-id is 2804 bytes long/,
    ],
  ])("%s", async (_, makeBody, webhookId, reason) => {
    const r = await receiver();
    const body = makeBody();
    const reply = await post(r.url, body, svixSigned(body, secret, { id: webhookId }).headers);
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatch(reason);
    expect(await r.rows()).toEqual([]);
  });

  it("fails at once, not retried, a stored delivery nested too deep to write (an older version accepted it)", async () => {
    const { db } = await createTestDatabase("embedded");
    const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-deep-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const queue = createDeliveryQueue(db);
    const nested = JSON.stringify(samplePrediction({ metrics: { n: "N" } })).replace('"N"', deep(1_000));
    await queue.enqueue({ id: "msg_deep", predictionId: "pdeep", body: nested, query: { userId: "u1" } });
    const storage = createLocalStorage(`${dir}/storage`);
    const worker = createDeliveryWorker({
      queue,
      pollIntervalMs: 50,
      process: createIngestProcessor(ingestPrediction, {
        db,
        storage,
        config: { outputHosts: ["replicate.delivery"], maxOutputBytes: MiB },
      }),
    });
    worker.start();
    closers.push(() => worker.stop());
    const [row] = await waitFor(async () => {
      const rows = await db.query<{ state: string; attempts: number; lastError: string }>(
        `SELECT state, attempts, "lastError" FROM "WebhookDelivery" WHERE state IN ('failed', 'done') OR attempts > 1`,
      );
      return rows.length > 0 && rows;
    });
    expect(row).toMatchObject({ state: "failed", attempts: 1 });
    expect(row!.lastError).toMatch(/nests deeper than 64 levels/);
  });
});

describe("the 413 reaches a client that is still sending", () => {
  it("answers 413 before any 100 Continue when Content-Length is over the limit", async () => {
    const r = await receiver();
    const head = [
      "POST /api/webhooks/replicate HTTP/1.1",
      "Host: 127.0.0.1",
      "Content-Type: application/json",
      `Content-Length: ${11 * MiB}`,
      "Expect: 100-continue",
      "",
      "",
    ].join("\r\n");
    const first = await firstBytesAfterHeaders(r.port, head);
    expect(first).toMatch(/^HTTP\/1\.1 413 /);
    expect(first).toMatch(/\r\nconnection: close\r\n/i);
  });

  it("sends 100 Continue to a delivery that passed the header checks", async () => {
    const r = await receiver();
    const delivery = svixSigned(JSON.stringify(samplePrediction()), secret);
    const head = [
      "POST /api/webhooks/replicate HTTP/1.1",
      "Host: 127.0.0.1",
      ...Object.entries(delivery.headers).map(([k, v]) => `${k}: ${v}`),
      `Content-Length: ${Buffer.byteLength(delivery.body)}`,
      "Expect: 100-continue",
      "",
      "",
    ].join("\r\n");
    expect(await firstBytesAfterHeaders(r.port, head)).toMatch(/^HTTP\/1\.1 100 Continue\r\n/);
  });

  it("delivers the 413 (never a reset) to 24 clients at once that send 12 MiB before reading, declared or chunked", async () => {
    // Room for every chunked body at once: how many are read at the same time depends on the
    // machine's load, and over the memory cap the answer is a 503 (tested above), not a 413.
    const r = await receiver({ maxBufferedBytes: 24 * 12 * MiB });
    const headers = svixSigned("{}", secret).headers;
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) => sendAllThenRead(r.port, headers, 12 * MiB, i % 2 === 0)),
    );
    expect(answers).toEqual(Array.from({ length: 24 }, () => "HTTP/1.1 413 Payload Too Large"));
    expect(r.server.bufferedBytes()).toBe(0);
  });
});
