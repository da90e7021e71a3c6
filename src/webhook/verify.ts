// Verifies Replicate webhook deliveries. Replicate signs them with the Standard Webhooks
// scheme (standardwebhooks.com): headers webhook-id, webhook-timestamp (Unix seconds) and
// webhook-signature (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`), keyed by the
// base64 part of the account's `whsec_…` secret.
// The HMAC, the multi-signature walk (`v1,<sig> v1,<sig>` during a key rotation) and the
// constant-time compare are the `standardwebhooks` package's; this module adds one-line
// reasons, case-insensitive header lookup for Headers / Node header records, and a
// timestamp tolerance that honours an injected `now` (for tests and replays).
import { Webhook } from "standardwebhooks";
import { ConfigError } from "../errors.ts";

export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

const HEADER_NAMES = ["webhook-id", "webhook-timestamp", "webhook-signature"] as const;
type HeaderName = (typeof HEADER_NAMES)[number];

export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export interface VerifyWebhookInput {
  /** The raw request body, exactly as received (not re-serialised JSON). */
  body: string;
  headers: WebhookHeaders;
  /** The account's signing secret, `whsec_<base64>`. */
  secret: string;
  /** The clock to check `webhook-timestamp` against; defaults to the current time. */
  now?: Date;
  /** How far `webhook-timestamp` may be from `now`, either way; defaults to 300 s. */
  toleranceSeconds?: number;
}

export type VerifyWebhookResult =
  { ok: true; webhookId: string; timestamp: Date } | { ok: false; status: 401; reason: string };

/**
 * Checks a delivery's headers, timestamp and signature. Never throws for anything the
 * sender controls (that is `{ ok: false, status: 401 }`); throws a ConfigError only when
 * the secret itself is unusable, which is the operator's problem, not the sender's.
 */
export function verifyWebhook(input: VerifyWebhookInput): VerifyWebhookResult {
  const webhook = createWebhook(input.secret);
  const checked = checkWebhookHeaders(input);
  if (!checked.ok) return checked;
  const { id, rawTimestamp, signature, seconds } = checked;

  // The timestamp was checked above against `now`/`tolerance`; the library's own check
  // uses the real clock and a fixed 5 minutes, so it is replaced on this instance with a
  // plain parse. Signature checking (HMAC, every v1 entry, constant time) stays the library's.
  (webhook as unknown as { verifyTimestamp: (header: string) => Date }).verifyTimestamp = () =>
    new Date(seconds * 1000);

  try {
    webhook.verify(
      input.body,
      { "webhook-id": id, "webhook-timestamp": rawTimestamp, "webhook-signature": signature },
      {
        jsonParse: false,
      },
    );
  } catch (error) {
    const count = signature.split(" ").filter((entry) => entry.startsWith("v1,")).length;
    const detail =
      count === 0
        ? "no v1 signature in webhook-signature"
        : `none of ${count} v1 signature${count === 1 ? "" : "s"} match this body and secret`;
    const libraryMessage = error instanceof Error ? error.message : String(error);
    return reject(`bad signature: ${detail} (${oneLine(libraryMessage)})`);
  }
  return { ok: true, webhookId: id, timestamp: new Date(seconds * 1000) };
}

export type WebhookHeadersCheck =
  | { ok: true; id: string; rawTimestamp: string; signature: string; seconds: number }
  | { ok: false; status: 401; reason: string };

/**
 * The part of verifyWebhook that needs no body: the three headers are there and the
 * timestamp is within the tolerance. The receiver answers 401 from this alone, before it
 * reads (and holds) a body that could be 10 MiB.
 */
export function checkWebhookHeaders(
  input: Pick<VerifyWebhookInput, "headers" | "now" | "toleranceSeconds">,
): WebhookHeadersCheck {
  const values = readHeaders(input.headers);
  const missing = HEADER_NAMES.filter((name) => !values[name]);
  if (missing.length > 0) return reject(`missing webhook headers: ${missing.join(", ")}`);
  const id = values["webhook-id"] as string;
  const rawTimestamp = (values["webhook-timestamp"] as string).trim();
  const signature = values["webhook-signature"] as string;

  if (!/^\d{1,15}$/.test(rawTimestamp)) {
    return reject(`invalid webhook-timestamp header ${quote(rawTimestamp)}: expected Unix seconds`);
  }
  const seconds = Number(rawTimestamp);
  const tolerance = input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const nowSeconds = Math.floor((input.now ?? new Date()).getTime() / 1000);
  const skew = nowSeconds - seconds;
  if (skew > tolerance) {
    return reject(`stale timestamp: ${describeSeconds(skew)} in the past (tolerance ${tolerance}s)`);
  }
  if (-skew > tolerance) {
    return reject(`stale timestamp: ${describeSeconds(-skew)} in the future (tolerance ${tolerance}s)`);
  }
  return { ok: true, id, rawTimestamp, signature, seconds };
}

export interface SignWebhookInput {
  id: string;
  /** A Date, or Unix seconds. */
  timestamp: Date | number;
  body: string;
  secret: string;
}

/** The `webhook-signature` header value (`v1,<base64>`) for a delivery, as Replicate signs it. */
export function signWebhook(input: SignWebhookInput): string {
  const date = typeof input.timestamp === "number" ? new Date(input.timestamp * 1000) : input.timestamp;
  return createWebhook(input.secret).sign(input.id, date, input.body);
}

function createWebhook(secret: string): Webhook {
  const hint = "Use the key from GET /v1/webhooks/default/secret: whsec_ followed by base64.";
  if (typeof secret !== "string" || secret.trim() === "" || secret.trim() === "whsec_") {
    throw new ConfigError("The webhook secret is empty.", hint);
  }
  try {
    return new Webhook(secret.trim());
  } catch (error) {
    throw new ConfigError(
      `The webhook secret is not valid: ${oneLine(error instanceof Error ? error.message : String(error))}.`,
      hint,
    );
  }
}

/**
 * The three headers, looked up case-insensitively in one pass over a header record (each
 * request is checked this way before and after its body is read); repeated values are joined
 * (signatures with a space).
 */
function readHeaders(headers: WebhookHeaders): Record<HeaderName, string | undefined> {
  if (typeof (headers as Headers).get === "function" && typeof (headers as Headers).forEach === "function") {
    const get = (name: HeaderName) => (headers as Headers).get(name) ?? undefined;
    return {
      "webhook-id": get("webhook-id"),
      "webhook-timestamp": get("webhook-timestamp"),
      "webhook-signature": get("webhook-signature"),
    };
  }
  const parts: Record<HeaderName, string[]> = { "webhook-id": [], "webhook-timestamp": [], "webhook-signature": [] };
  for (const [key, value] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    const name = key.toLowerCase();
    if (!Object.hasOwn(parts, name) || value === undefined) continue;
    for (const part of Array.isArray(value) ? value : [value])
      if (part.trim() !== "") parts[name as HeaderName].push(part.trim());
  }
  const join = (name: HeaderName) =>
    // Two different ids or timestamps make the delivery ambiguous; joining them makes it fail.
    parts[name].length === 0 ? undefined : parts[name].join(name === "webhook-signature" ? " " : ",");
  return {
    "webhook-id": join("webhook-id"),
    "webhook-timestamp": join("webhook-timestamp"),
    "webhook-signature": join("webhook-signature"),
  };
}

function reject(reason: string): { ok: false; status: 401; reason: string } {
  return { ok: false, status: 401, reason };
}

function describeSeconds(total: number): string {
  if (total < 120) return `${total}s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 120) return `${minutes}m ${total % 60}s`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours}h ${minutes % 60}m` : `${Math.floor(hours / 24)}d`;
}

function quote(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
