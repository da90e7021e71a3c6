// `trigger` without the CLI: a realistic sample prediction (REPLICATE.md's format), signed
// as Replicate signs its webhooks, POSTed to a receiver, and the receiver's answer.
import { randomBytes, randomUUID } from "node:crypto";
import { detectOperation } from "../core/operation.ts";
import type { Status } from "../core/status.ts";
import { signWebhook } from "./verify.ts";

export const DEFAULT_TRIGGER_URL = "http://127.0.0.1:3000/api/webhooks/replicate";

export interface SampleInput {
  status: Status;
  prompt: string;
  /** Output URLs; default: one made-up replicate.delivery URL (an .mp4 for [VIDEO], else a .webp). */
  outputs?: string[];
  id?: string;
  now?: Date;
}

/** A prediction id shaped like Replicate's (26 lowercase base32 characters). */
export function samplePredictionId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  return Array.from(randomBytes(26), (byte) => alphabet[byte % 32]).join("");
}

export function buildSamplePrediction(input: SampleInput): Record<string, unknown> {
  const id = input.id ?? samplePredictionId();
  const now = input.now ?? new Date();
  const at = (secondsAgo: number) => new Date(now.getTime() - secondsAgo * 1000).toISOString();
  const video = detectOperation(input.prompt).operationType === "video";
  const final =
    input.status === "succeeded" ||
    input.status === "failed" ||
    input.status === "canceled" ||
    input.status === "aborted";
  const outputs = input.outputs ?? [
    `https://replicate.delivery/xezq/${randomBytes(8).toString("hex")}/out-0.${video ? "mp4" : "webp"}`,
  ];
  const output = input.status !== "succeeded" ? null : video && outputs.length === 1 ? outputs[0] : outputs;
  return {
    id,
    model: video ? "wan-video/wan-2.2-t2v-fast" : "black-forest-labs/flux-schnell",
    version: "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
    input: { prompt: input.prompt },
    logs: input.status === "starting" ? "" : "Using seed: 1234\n",
    output,
    data_removed: false,
    error: input.status === "failed" ? "Sample failure sent by genstore trigger" : null,
    status: input.status,
    source: "api",
    created_at: at(4),
    started_at: input.status === "starting" || input.status === "aborted" ? null : at(3),
    completed_at: final ? now.toISOString() : null,
    urls: {
      get: `https://api.replicate.com/v1/predictions/${id}`,
      cancel: `https://api.replicate.com/v1/predictions/${id}/cancel`,
      web: `https://replicate.com/p/${id}`,
    },
    metrics: input.status === "succeeded" ? { predict_time: 2.7, total_time: 4.0 } : {},
  };
}

export interface TriggerInput {
  url: string;
  secret: string;
  prediction: Record<string, unknown>;
  /** Added to the URL's query string as userId, as apps register their webhooks. */
  user?: string;
  now?: Date;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

export interface TriggerResult {
  url: string;
  webhookId: string;
  predictionId: string;
  status: number;
  statusText: string;
  /** The receiver's answer, parsed when it is JSON, else its text. */
  body: unknown;
}

/** Signs and POSTs the prediction; throws only when the receiver cannot be reached. */
export async function sendTrigger(input: TriggerInput): Promise<TriggerResult> {
  const url = new URL(input.url);
  if (input.user !== undefined && !url.searchParams.has("userId")) url.searchParams.set("userId", input.user);
  const body = JSON.stringify(input.prediction);
  const webhookId = `msg_${randomUUID().replaceAll("-", "")}`;
  const timestamp = Math.floor((input.now ?? new Date()).getTime() / 1000);
  const signature = signWebhook({ id: webhookId, timestamp, body, secret: input.secret });
  const response = await (input.fetch ?? fetch)(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "user-agent": "genstore-trigger",
      "webhook-id": webhookId,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": signature,
    },
    body,
    signal: input.signal,
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: keep the text.
  }
  return {
    url: url.toString(),
    webhookId,
    predictionId: String(input.prediction.id),
    status: response.status,
    statusText: response.statusText,
    body: parsed,
  };
}
