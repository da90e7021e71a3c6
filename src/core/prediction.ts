// A Replicate prediction as genstore reads it (GET /v1/predictions/{id} and webhook bodies),
// and the pure helpers the ingestion pipeline needs from it. No I/O here.
import { z } from "zod";
import { unsafeIdReason, unsafeSegmentReason } from "./ids.ts";
import { idLengthProblem, jsonTextProblem, jsonValueProblem } from "./json-limits.ts";
import { STATUSES } from "./status.ts";

/**
 * Only the fields genstore uses are described; unknown extra fields (logs, source, webhook,
 * deployment, …) are kept (looseObject). `model` and `version` are optional because
 * deployments and official models may omit or hide them; `output` is null until done.
 */
export const PredictionSchema = z.looseObject({
  id: z
    .string()
    .min(1)
    .check((ctx) => {
      const problem = idLengthProblem(ctx.value);
      if (problem !== undefined) ctx.issues.push({ code: "custom", message: problem, input: ctx.value });
    }),
  model: z.string().optional(),
  version: z.string().nullable().optional(),
  input: z.record(z.string(), z.unknown()).optional(),
  output: z
    .union([z.string(), z.array(z.string()), z.record(z.string(), z.unknown()), z.null()])
    .optional()
    .transform((v) => (v === undefined ? null : v)),
  status: z.enum(STATUSES),
  error: z.unknown().optional(),
  data_removed: z.boolean().optional(),
  created_at: z.string().nullable().optional(),
  started_at: z.string().nullable().optional(),
  completed_at: z.string().nullable().optional(),
  metrics: z.record(z.string(), z.unknown()).nullable().optional(),
  urls: z.record(z.string(), z.unknown()).nullable().optional(),
});

export type Prediction = z.output<typeof PredictionSchema>;

export type ParsePredictionResult = { ok: true; prediction: Prediction } | { ok: false; reason: string };

/**
 * Parses a prediction from parsed JSON, or from a JSON string. Never throws. A body that
 * could never be stored (nested too deep, a number out of range: json-limits.ts) is refused
 * like one that is not a prediction.
 */
export function parsePrediction(json: unknown): ParsePredictionResult {
  let value = json;
  if (typeof json === "string") {
    const problem = jsonTextProblem(json);
    if (problem !== undefined) return { ok: false, reason: `body cannot be stored: ${problem}` };
    try {
      value = JSON.parse(json);
    } catch {
      return { ok: false, reason: "malformed JSON: not a prediction" };
    }
  } else {
    const problem = jsonValueProblem(json);
    if (problem !== undefined) return { ok: false, reason: `body cannot be stored: ${problem}` };
  }
  const result = PredictionSchema.safeParse(value);
  if (result.success) return { ok: true, prediction: result.data };
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join(".") : "prediction";
  return { ok: false, reason: `not a Replicate prediction: ${where}: ${issue?.message ?? "invalid"}` };
}

function looksLikeUrl(value: string): boolean {
  return /^https?:\/\//i.test(value) && URL.canParse(value);
}

/**
 * The output URLs, in output order: a string is one output; an array gives its strings; an
 * object gives its string values that look like http(s) URLs, in key order; null gives none.
 * Strings and array items are returned as they are (the download step checks them).
 */
export function outputUrls(prediction: Pick<Prediction, "output">): string[] {
  const output = prediction.output;
  if (output === null || output === undefined) return [];
  if (typeof output === "string") return [output];
  if (Array.isArray(output)) return output.filter((v): v is string => typeof v === "string");
  return Object.values(output).filter((v): v is string => typeof v === "string" && looksLikeUrl(v));
}

/** input.prompt when it is a string, else "". */
export function promptOf(prediction: Pick<Prediction, "input">): string {
  const prompt = prediction.input?.["prompt"];
  return typeof prompt === "string" ? prompt : "";
}

export type Query = URLSearchParams | Record<string, string>;

export type UserIdSource = "webhook-query" | "prediction-input";

export type UserIdHint =
  | { accepted: true; source: UserIdSource; field: string; userId: string }
  | { accepted: false; source: UserIdSource; field: string; value: unknown; reason: string };

/** The prediction input fields read as a userId, in this order. */
export const USER_ID_INPUT_FIELDS = ["user_id", "userId"] as const;

/** Query parameter values: one value, undefined when absent, or a refusal when repeated with different values. */
function queryValue(query: Query, name: string): { value: string } | { repeated: string[] } | undefined {
  if (query instanceof URLSearchParams) {
    const all = [...new Set(query.getAll(name))];
    if (all.length === 0) return undefined;
    return all.length === 1 ? { value: all[0]! } : { repeated: all };
  }
  return Object.hasOwn(query, name) && typeof query[name] === "string" ? { value: query[name] } : undefined;
}

function hint(source: UserIdSource, field: string, value: unknown): UserIdHint {
  if (typeof value !== "string") return { accepted: false, source, field, value, reason: "is not a string" };
  const reason = unsafeSegmentReason(value);
  return reason === undefined
    ? { accepted: true, source, field, userId: value }
    : { accepted: false, source, field, value, reason };
}

/**
 * userId candidates for a prediction that has no row yet, in priority order:
 *   1. the webhook URL's query string `userId` (source "webhook-query");
 *   2. the prediction input's `user_id`, then `userId` (source "prediction-input").
 * Absent (or null) fields give no candidate. Every value is checked with
 * unsafeSegmentReason: an unsafe one is returned refused with its reason, never accepted.
 * An existing row's userId always wins over these; that is decided by planIngest.
 */
export function userIdHints(prediction: Pick<Prediction, "input">, query: Query): UserIdHint[] {
  const hints: UserIdHint[] = [];
  const fromQuery = queryValue(query, "userId");
  if (fromQuery && "repeated" in fromQuery) {
    hints.push({
      accepted: false,
      source: "webhook-query",
      field: "userId",
      value: fromQuery.repeated,
      reason: "is given more than once with different values",
    });
  } else if (fromQuery) {
    hints.push(hint("webhook-query", "userId", fromQuery.value));
  }
  for (const field of USER_ID_INPUT_FIELDS) {
    const value = prediction.input?.[field];
    if (value !== undefined && value !== null) hints.push(hint("prediction-input", field, value));
  }
  return hints;
}

export type GenerationIdHint =
  { accepted: true; generationId: string } | { accepted: false; value: unknown; reason: string };

/** The query string's `generationId`, checked as the start of a file name (unsafeIdReason); undefined when absent. */
export function generationIdHint(query: Query): GenerationIdHint | undefined {
  const found = queryValue(query, "generationId");
  if (!found) return undefined;
  if ("repeated" in found)
    return { accepted: false, value: found.repeated, reason: "is given more than once with different values" };
  const reason = unsafeIdReason(found.value);
  return reason === undefined
    ? { accepted: true, generationId: found.value }
    : { accepted: false, value: found.value, reason };
}
