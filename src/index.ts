// The library: what a Next.js route handler (or any server) needs to receive Replicate
// webhooks and ingest predictions the way the genstore CLI does. Bundled to dist/index.js.
export { verifyWebhook, signWebhook } from "./webhook/verify.ts";
export type { VerifyWebhookInput, VerifyWebhookResult, SignWebhookInput, WebhookHeaders } from "./webhook/verify.ts";
export { ingestPrediction } from "./pipeline/ingest.ts";
export type { IngestRequest, IngestResult, PipelineDeps, StoredObject, Arrival } from "./pipeline/types.ts";
export { parsePrediction } from "./core/prediction.ts";
export type { Prediction, ParsePredictionResult } from "./core/prediction.ts";
export { createDrainRoute, createWebhookRoute, handleReplicateWebhook, openGenstore } from "./webhook/route-handler.ts";
export type {
  DrainRouteOptions,
  Genstore,
  HandleReplicateWebhookOptions,
  WebhookRouteOptions,
} from "./webhook/route-handler.ts";
export { drainDeliveries } from "./webhook/drain.ts";
export type { DrainOptions, DrainResult } from "./webhook/drain.ts";
export { loadConfig } from "./config.ts";
export type { Config } from "./config.ts";
