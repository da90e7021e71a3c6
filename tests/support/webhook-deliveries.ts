import { randomBytes, webcrypto } from "node:crypto";
import http from "node:http";
import { validateWebhook } from "replicate";
import { Webhook as SvixWebhook } from "svix";

// Webhook deliveries as Replicate sends them (a POST whose body is the prediction object,
// with the Standard Webhooks headers), signed by the svix package, not by genstore's own
// signer, and a plain node:http client to send them with.

export const newSecret = () => `whsec_${randomBytes(24).toString("base64")}`;

export function samplePrediction(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const id = (overrides.id as string | undefined) ?? `p${randomBytes(10).toString("hex")}`;
  return {
    id,
    model: "black-forest-labs/flux-schnell",
    version: "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
    input: { prompt: "a red fox in snow" },
    logs: "",
    output: ["https://replicate.delivery/xezq/abc123/out-0.webp"],
    data_removed: false,
    error: null,
    status: "succeeded",
    source: "api",
    created_at: "2026-11-20T10:00:00.000Z",
    started_at: "2026-11-20T10:00:01.000Z",
    completed_at: "2026-11-20T10:00:04.000Z",
    urls: { get: `https://api.replicate.com/v1/predictions/${id}`, web: `https://replicate.com/p/${id}` },
    metrics: { predict_time: 2.7, total_time: 4.0 },
    ...overrides,
  };
}

export interface SignedDelivery {
  id: string;
  body: string;
  headers: Record<string, string>;
}

/** Signs body with svix, as Replicate would (webhook-id, webhook-timestamp, webhook-signature). */
export function svixSigned(body: string, secret: string, options: { id?: string; date?: Date } = {}): SignedDelivery {
  const id = options.id ?? `msg_${randomBytes(12).toString("hex")}`;
  const date = options.date ?? new Date();
  const signature = new SvixWebhook(secret).sign(id, date, body);
  return {
    id,
    body,
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(date.getTime() / 1000)),
      "webhook-signature": signature,
    },
  };
}

/** What replicate's own validateWebhook says about the same headers and body. */
export function replicateAccepts(delivery: SignedDelivery, secret: string): Promise<boolean> {
  return validateWebhook(
    {
      id: delivery.headers["webhook-id"]!,
      timestamp: delivery.headers["webhook-timestamp"]!,
      signature: delivery.headers["webhook-signature"]!,
      body: delivery.body,
      secret,
    },
    webcrypto as unknown as Crypto,
  );
}

export interface Reply {
  status: number;
  body: string;
  json: any;
  headers: http.IncomingHttpHeaders;
}

/** POSTs with node:http (not fetch): a body of any size, and a reply even when the server stops reading. */
export function post(
  url: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
  agent?: http.Agent,
): Promise<Reply> {
  return request("POST", url, body, headers, agent);
}

export function request(
  method: string,
  url: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
  agent?: http.Agent,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        headers: { ...headers, ...(body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}) },
        agent,
        // Idle time on the socket: only a receiver that hangs gets here, however busy the machine.
        timeout: 120_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: text, json, headers: res.headers });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out`)));
    // The server may answer (413) and close before the whole body is written: keep the reply.
    req.on("error", (error) => reject(error));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}
