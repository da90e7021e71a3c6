// What happens to one webhook request once its body is read, for the node:http server and
// the web-standard handler alike: verify the signature, check it is a prediction, and make
// it durable in the queue. Returns the HTTP answer; never throws for the sender's mistakes.
import { createHash } from "node:crypto";
import { idLengthProblem } from "../core/json-limits.ts";
import { parsePrediction, type Prediction } from "../core/prediction.ts";
import { storedQueryFrom, type DeliveryQueue } from "./queue.ts";
import { checkWebhookHeaders, verifyWebhook, type WebhookHeaders } from "./verify.ts";

export const WEBHOOK_PATH = "/api/webhooks/replicate";
/** Replicate's bodies can be large (logs, inputs): a small limit loses deliveries. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface AcceptInput {
  body: string;
  headers: WebhookHeaders;
  /** The request URL's query string (userId, generationId): unsigned hints for orphans. */
  query: URLSearchParams;
  /** Required unless insecureNoVerify. */
  secret?: string;
  insecureNoVerify?: boolean;
  queue: DeliveryQueue;
  now?: Date;
}

export interface AcceptResult {
  status: 200 | 400 | 401 | 413 | 503;
  body: Record<string, unknown>;
  /** The delivery's log line ("401 bad signature: …"). */
  line: string;
  accepted?: { webhookId: string; prediction: Prediction; duplicate: boolean };
}

/**
 * The answer a request gets from its headers alone, before its body is read, or undefined
 * when the body must be read: without the three webhook-* headers, or with a timestamp
 * outside the tolerance, no body can pass, so a sender without the secret cannot make the
 * receiver hold 10 MiB per request. A declared length over maxBodyBytes is a 413.
 */
export function precheckDelivery(
  input: Pick<AcceptInput, "headers" | "secret" | "insecureNoVerify" | "now"> & {
    contentLength: number | undefined;
    maxBodyBytes: number;
  },
): AcceptResult | undefined {
  if (input.contentLength !== undefined && input.contentLength > input.maxBodyBytes) {
    const error = `body over ${formatBytes(input.maxBodyBytes)}`;
    return { status: 413, body: { error }, line: `413 ${error}` };
  }
  if (input.insecureNoVerify) return undefined;
  const checked = checkWebhookHeaders({ headers: input.headers, now: input.now });
  if (!checked.ok) return { status: 401, body: { error: checked.reason }, line: `401 ${checked.reason}` };
  return undefined;
}

export async function acceptDelivery(input: AcceptInput): Promise<AcceptResult> {
  let webhookId: string;
  if (input.insecureNoVerify) {
    // Unsigned deliveries still need a stable id to deduplicate by.
    webhookId =
      headerValue(input.headers, "webhook-id") ??
      `unsigned_${createHash("sha256").update(input.body).digest("hex").slice(0, 32)}`;
  } else {
    const verified = verifyWebhook({
      body: input.body,
      headers: input.headers,
      secret: input.secret ?? "",
      now: input.now,
    });
    if (!verified.ok) return { status: 401, body: { error: verified.reason }, line: `401 ${verified.reason}` };
    webhookId = verified.webhookId;
  }
  // The id is the queue's primary key: one longer than an index entry holds can never be stored.
  const idProblem = idLengthProblem(webhookId);
  if (idProblem !== undefined) {
    const error = `webhook-id ${idProblem}`;
    return { status: 400, body: { error }, line: `400 ${error}` };
  }

  const parsed = parsePrediction(input.body);
  if (!parsed.ok) return { status: 400, body: { error: parsed.reason }, line: `400 ${webhookId} ${parsed.reason}` };
  const prediction = parsed.prediction;

  let duplicate: boolean;
  try {
    ({ duplicate } = await input.queue.enqueue({
      id: webhookId,
      predictionId: prediction.id,
      body: input.body,
      query: storedQueryFrom(input.query),
    }));
  } catch (error) {
    const text = oneLine(error);
    // PostgreSQL refuses some valid JSON in jsonb (\u0000), and what parsePrediction's limits
    // let through must still never become a 503 the sender retries forever: the sender's body,
    // not our failure.
    if (
      /unsupported Unicode escape|invalid input syntax for type json|value overflows numeric format|stack depth limit exceeded|index row (size \d+ )?(size |requires )?.*exceeds/i.test(
        text,
      )
    ) {
      return {
        status: 400,
        body: { error: `body cannot be stored as JSON: ${text}` },
        line: `400 ${webhookId} body cannot be stored as JSON: ${text}`,
      };
    }
    return {
      status: 503,
      body: { error: "the delivery could not be stored; retry later" },
      line: `503 ${webhookId} ${prediction.id} could not be stored: ${text}`,
    };
  }
  return {
    status: 200,
    body: { ok: true, webhookId, predictionId: prediction.id, duplicate },
    line: `200 ${webhookId} ${prediction.id} ${prediction.status} ${duplicate ? "duplicate, already received" : "queued"}`,
    accepted: { webhookId, prediction, duplicate },
  };
}

export function formatBytes(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return Number.isInteger(mib) ? `${mib} MiB` : `${bytes} bytes`;
}

function headerValue(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  return (Array.isArray(value) ? value[0] : value)?.trim() || undefined;
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}
