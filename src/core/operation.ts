// The prefix table: the one place that says which prompt prefix means which operation and
// which storage folder. The pipeline, backfill, list's SQL filter and migrate-keys all
// read it from here.
//
// Matching rule, decided once: leading whitespace (space, tab, CR, LF) before the prefix
// is ignored; the prefix itself is matched case-sensitively, exactly as the app writes it
// ("[EDITED]", not "[edited]"), because a lower-case "[edited]" is more likely words a
// person typed than a marker the app added.

export const OPERATION_TYPES = ["generation", "edit", "upscale", "video"] as const;
export type OperationType = (typeof OPERATION_TYPES)[number];

export const STORAGE_CONTEXTS = ["generated", "edited", "upscaled", "videos"] as const;
export type StorageContext = (typeof STORAGE_CONTEXTS)[number];

export interface OperationRule {
  prefix: string | null;
  operationType: OperationType;
  storageContext: StorageContext;
}

export const PREFIX_TABLE: readonly OperationRule[] = [
  { prefix: "[EDITED]", operationType: "edit", storageContext: "edited" },
  { prefix: "[UPSCALED]", operationType: "upscale", storageContext: "upscaled" },
  { prefix: "[VIDEO]", operationType: "video", storageContext: "videos" },
];

export const DEFAULT_RULE: OperationRule = { prefix: null, operationType: "generation", storageContext: "generated" };

/** Whitespace skipped before a prefix; the SQL below trims the same characters. */
const LEADING_WHITESPACE = /^[ \t\r\n]+/;

export type DetectionSource = "operationType-column" | "prompt-prefix";

export interface Detection {
  operationType: OperationType;
  storageContext: StorageContext;
  detectedBy: DetectionSource;
}

/** Decides the operation from the prompt alone. */
export function detectOperation(prompt: string | null | undefined): OperationRule {
  const trimmed = (prompt ?? "").replace(LEADING_WHITESPACE, "");
  return PREFIX_TABLE.find((rule) => trimmed.startsWith(rule.prefix as string)) ?? DEFAULT_RULE;
}

export function isOperationType(value: unknown): value is OperationType {
  return typeof value === "string" && (OPERATION_TYPES as readonly string[]).includes(value);
}

export function isStorageContext(value: unknown): value is StorageContext {
  return typeof value === "string" && (STORAGE_CONTEXTS as readonly string[]).includes(value);
}

export function contextForOperation(operationType: OperationType): StorageContext {
  return ruleFor(operationType).storageContext;
}

export function operationForContext(context: StorageContext): OperationType {
  return [...PREFIX_TABLE, DEFAULT_RULE].find((r) => r.storageContext === context)!.operationType;
}

function ruleFor(operationType: OperationType): OperationRule {
  return [...PREFIX_TABLE, DEFAULT_RULE].find((r) => r.operationType === operationType)!;
}

/**
 * The hybrid rule: a row's operationType column, where it holds a known value, wins over
 * its prompt; rows from before the column existed fall back to the prompt prefix.
 */
export function resolveOperation(row: { operationType?: string | null; prompt?: string | null }): Detection {
  if (isOperationType(row.operationType)) {
    return {
      operationType: row.operationType,
      storageContext: contextForOperation(row.operationType),
      detectedBy: "operationType-column",
    };
  }
  const rule = detectOperation(row.prompt);
  return { operationType: rule.operationType, storageContext: rule.storageContext, detectedBy: "prompt-prefix" };
}

// --- The same table as SQL, for set-based work in PostgreSQL -------------------------------

/** `ltrim(<column>, ' \t\r\n')`: the prompt with the leading whitespace the rule ignores. */
function trimmedSql(promptColumn: string): string {
  return `ltrim(${promptColumn}, E' \\t\\r\\n')`;
}

/** `starts with prefix` as SQL; LIKE's own wildcards (% _ \) are escaped. */
function startsWithSql(promptColumn: string, prefix: string): string {
  const pattern = prefix.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/'/g, "''");
  return `${trimmedSql(promptColumn)} LIKE '${pattern}%'`;
}

/** A CASE expression giving the operationType the prompt prefix means. */
export function operationFromPromptSql(promptColumn = `"prompt"`): string {
  const whens = PREFIX_TABLE.map((r) => `WHEN ${startsWithSql(promptColumn, r.prefix!)} THEN '${r.operationType}'`);
  return `CASE ${whens.join(" ")} ELSE '${DEFAULT_RULE.operationType}' END`;
}

/** A CASE expression mapping an operationType expression to its storage context. */
export function contextFromOperationSql(operationSql: string): string {
  const whens = [...PREFIX_TABLE, DEFAULT_RULE].map((r) => `WHEN '${r.operationType}' THEN '${r.storageContext}'`);
  return `CASE ${operationSql} ${whens.join(" ")} END`;
}

/**
 * A WHERE condition for "rows of this operation" under the hybrid rule, written so
 * PostgreSQL can use the operationType index for new rows and only reads prompts of rows
 * that lack the column.
 */
export function hybridOperationConditionSql(
  operationType: OperationType,
  columns: { operationType?: string; prompt?: string } = {},
): string {
  const op = columns.operationType ?? `"operationType"`;
  const prompt = columns.prompt ?? `"prompt"`;
  const fromPrompt =
    operationType === DEFAULT_RULE.operationType
      ? PREFIX_TABLE.map((r) => `NOT (${startsWithSql(prompt, r.prefix!)})`).join(" AND ")
      : startsWithSql(prompt, ruleFor(operationType).prefix!);
  return `(${op} = '${operationType}' OR (NOT ${knownOperationSql(op)} AND ${fromPrompt}))`;
}

/**
 * True where the column holds one of the operation types, so the hybrid rule takes the
 * column; false (never NULL) where it is NULL or holds something else, so the prompt decides.
 */
export function knownOperationSql(operationTypeColumn = `"operationType"`): string {
  const known = OPERATION_TYPES.map((o) => `'${o}'`).join(", ");
  return `COALESCE(${operationTypeColumn} IN (${known}), false)`;
}
