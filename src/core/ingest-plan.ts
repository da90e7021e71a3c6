// The ingestion decision, as plain data: which row, whose folder, which operation, which
// status, and which objects still need storing. The pipeline executes the plan; nothing
// here touches the network, storage or the database.
import { unsafeIdReason, unsafeSegmentReason } from "./ids.ts";
import { contentTypeFor, extensionFor, isImageExtension, storageKeyFor, thumbnailKeyFor } from "./keys.ts";
import { resolveOperation, type Detection } from "./operation.ts";
import { outputUrls, promptOf, type Prediction, type UserIdHint } from "./prediction.ts";
import { isStatus, nextStatus, type Status, type Transition } from "./status.ts";

export interface ExistingRow {
  id: string;
  userId: string;
  status: string | null;
  operationType: string | null;
  prompt: string | null;
  storageKeys: ReadonlyArray<{ key: string; kind?: string; [field: string]: unknown }>;
}

export interface PlanIngestInput {
  prediction: Prediction;
  /** The row this prediction already has (found by replicateId or generationId), or null. */
  row: ExistingRow | null;
  /** From userIdHints(): query string first, then prediction input. */
  hints: readonly UserIdHint[];
  /** The operator's `--user`, used only when no row and no accepted hint gives a userId. */
  fallbackUserId?: string | null;
  /** The id a new row gets (ignored when row exists). */
  newId: string;
}

export type UserIdDecisionSource = "existing-row" | "webhook-query" | "prediction-input" | "cli-flag";

export interface PlannedObject {
  index: number;
  url: string;
  ext: string;
  contentType: string | null;
  key: string;
  /** true when the row already lists `key` (only the thumbnail is missing). */
  outputStored: boolean;
  /** Thumbnail key for images whose thumbnail the row does not list yet, else null. */
  thumbnailKey: string | null;
}

export interface IngestPlan {
  ok: true;
  id: string;
  isNew: boolean;
  userId: string;
  userIdSource: UserIdDecisionSource;
  /** Hints not used: refused as unsafe, or outranked (e.g. a query userId differing from the row's). */
  ignoredHints: Array<{ hint: UserIdHint; why: string }>;
  prompt: string;
  detection: Detection;
  transition: Transition;
  status: Status;
  outputUrls: string[];
  toStore: PlannedObject[];
  /** Keys the row already lists for this prediction's outputs (outputs and thumbnails): nothing to do for them. */
  alreadyStored: Array<{ index: number; key: string; kind: "output" | "thumbnail" }>;
  /** Set when the resulting status is failed, canceled or aborted. */
  error: string | null;
  warnings: string[];
}

export type PlanResult = IngestPlan | { ok: false; reason: string };

const FAILED: readonly Status[] = ["failed", "canceled", "aborted"];

function errorText(error: unknown, status: Status): string {
  if (typeof error === "string" && error.trim() !== "") return error;
  if (error !== null && error !== undefined && typeof error === "object") return JSON.stringify(error);
  return `prediction ${status}`;
}

export function planIngest(input: PlanIngestInput): PlanResult {
  const { prediction, row, hints } = input;
  const ignoredHints: IngestPlan["ignoredHints"] = [];

  // Who owns it. An existing row's userId is never moved by a hint (the query string is not
  // covered by the webhook signature); hints only place a prediction that has no row.
  let userId: string;
  let userIdSource: UserIdDecisionSource;
  if (row) {
    const reason = unsafeSegmentReason(row.userId);
    if (reason !== undefined)
      return {
        ok: false,
        reason: `row ${row.id} has userId ${JSON.stringify(row.userId)} that ${reason}; refusing to store under it`,
      };
    userId = row.userId;
    userIdSource = "existing-row";
    for (const hint of hints) {
      if (!hint.accepted) ignoredHints.push({ hint, why: `refused: ${hint.reason}` });
      else if (hint.userId !== row.userId) ignoredHints.push({ hint, why: `the row already belongs to ${row.userId}` });
    }
  } else {
    const chosen = hints.find((h): h is Extract<UserIdHint, { accepted: true }> => h.accepted);
    for (const hint of hints) {
      if (!hint.accepted) ignoredHints.push({ hint, why: `refused: ${hint.reason}` });
      else if (hint !== chosen) ignoredHints.push({ hint, why: `outranked by ${chosen!.source} ${chosen!.field}` });
    }
    if (chosen) {
      userId = chosen.userId;
      userIdSource = chosen.source;
    } else if (input.fallbackUserId !== undefined && input.fallbackUserId !== null) {
      const reason = unsafeSegmentReason(input.fallbackUserId);
      if (reason !== undefined)
        return { ok: false, reason: `the fallback user ${JSON.stringify(input.fallbackUserId)} ${reason}` };
      userId = input.fallbackUserId;
      userIdSource = "cli-flag";
    } else {
      const refused = hints
        .filter((h) => !h.accepted)
        .map((h) => `${h.source} ${h.field} ${h.accepted ? "" : h.reason}`);
      const why = refused.length > 0 ? ` (refused: ${refused.join("; ")})` : "";
      return {
        ok: false,
        // What to do about it is the caller's hint: --user for the CLI, `user` for the library.
        reason: `prediction ${prediction.id} has no row and no usable userId${why}`,
      };
    }
  }

  const id = row ? row.id : input.newId;
  const idReason = unsafeIdReason(id);
  if (idReason !== undefined) return { ok: false, reason: `generation id ${JSON.stringify(id)} ${idReason}` };

  const prompt = row?.prompt ?? promptOf(prediction);
  const detection = resolveOperation({ operationType: row?.operationType ?? null, prompt });
  const transition = nextStatus(row && isStatus(row.status) ? row.status : null, prediction.status);
  const status = transition.status;
  const urls = outputUrls(prediction);
  const warnings: string[] = [];

  const toStore: PlannedObject[] = [];
  const alreadyStored: IngestPlan["alreadyStored"] = [];
  if (prediction.status === "succeeded" && status === "succeeded") {
    const present = new Set((row?.storageKeys ?? []).map((entry) => entry.key));
    urls.forEach((url, index) => {
      const ext = extensionFor(url);
      const key = storageKeyFor(detection.storageContext, userId, id, index, ext);
      const thumb = isImageExtension(ext) ? thumbnailKeyFor(detection.storageContext, userId, id, index) : null;
      const outputStored = present.has(key);
      const thumbnailKey = thumb !== null && !present.has(thumb) ? thumb : null;
      // Every key the row already lists is reported, thumbnails included, also when the
      // other half of the pair still has to be stored.
      if (outputStored) alreadyStored.push({ index, key, kind: "output" });
      if (thumb !== null && thumbnailKey === null) alreadyStored.push({ index, key: thumb, kind: "thumbnail" });
      if (!outputStored || thumbnailKey !== null)
        toStore.push({ index, url, ext, contentType: contentTypeFor(url) ?? null, key, outputStored, thumbnailKey });
    });
    if (urls.length === 0) warnings.push(`prediction ${prediction.id} succeeded without output URLs`);
    if (toStore.length > 0 && prediction.data_removed === true) {
      warnings.push(`Replicate has removed the outputs of ${prediction.id} (data_removed): downloads will fail`);
    }
  }

  const error = FAILED.includes(status)
    ? prediction.status === status
      ? errorText(prediction.error, status)
      : `prediction ${status}`
    : null;

  return {
    ok: true,
    id,
    isNew: row === null,
    userId,
    userIdSource,
    ignoredHints,
    prompt,
    detection,
    transition,
    status,
    outputUrls: urls,
    toStore,
    alreadyStored,
    error,
    warnings,
  };
}
