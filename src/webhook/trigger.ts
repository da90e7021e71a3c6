// `trigger` without the CLI: a realistic sample prediction (the body of Replicate's
// prediction webhooks: the prediction object as GET /v1/predictions/{id} returns it),
// signed as Replicate signs its webhooks (Standard Webhooks), POSTed to a receiver, and the
// receiver's answer.
import { randomBytes, randomUUID } from "node:crypto";
import { detectOperation } from "../core/operation.ts";
import type { Status } from "../core/status.ts";
import { ConfigError, ExitCode, UserError } from "../errors.ts";
import { WEBHOOK_PATH } from "./accept-delivery.ts";
import { signWebhook } from "./verify.ts";

/** Where `genstore serve-webhook` listens by default. */
export const DEFAULT_TRIGGER_URL = `http://127.0.0.1:3000${WEBHOOK_PATH}`;

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

export interface RunTriggerInput extends Omit<SampleInput, "now"> {
  url: string;
  /** The receiver's secret (REPLICATE_WEBHOOK_SECRET or --secret); required. */
  secret: string | undefined;
  user?: string;
}

export interface RunTriggerDeps {
  signal: AbortSignal;
  /** Told what is about to be sent. */
  onSend?: (prediction: Record<string, unknown>) => void;
  /** How long to wait for the receiver's answer (default 30 s). */
  timeoutMs?: number;
}

/**
 * Builds the sample, signs and sends it; returns what was sent and the answer, whatever its
 * status. Throws ConfigError without a secret, and a UserError (exit 6) when nothing answers.
 */
export async function runTrigger(
  input: RunTriggerInput,
  deps: RunTriggerDeps,
): Promise<TriggerResult & { sent: Record<string, unknown> }> {
  if (!input.secret) {
    throw new ConfigError(
      "Missing configuration: REPLICATE_WEBHOOK_SECRET (trigger signs the sample with it).",
      "Set it, or pass --secret whsec_…; it must be the receiver's secret.",
    );
  }
  const prediction = buildSamplePrediction(input);
  deps.onSend?.(prediction);
  try {
    const result = await sendTrigger({
      url: input.url,
      secret: input.secret,
      prediction,
      user: input.user,
      signal: AbortSignal.any([deps.signal, AbortSignal.timeout(deps.timeoutMs ?? 30_000)]),
    });
    return { sent: prediction, ...result };
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new UserError(`Cannot reach the receiver at ${input.url}: ${reason}.`, {
      exitCode: ExitCode.replicate,
      hint: "Start it with `genstore serve-webhook` (or check --url), then run trigger again.",
    });
  }
}
