import { DatabaseError, UserError } from "../errors.ts";

// What a driver's failure means for the user, from its SQLSTATE (PostgreSQL and PGlite
// both report it as `code`) or its network error code. Used only by the boundary in
// client.ts: every query goes through it, so nothing above sees a raw driver error.

/** SQLSTATEs that mean our own SQL is wrong: a bug, reported as one (exit 1), not as a database failure. */
const OUR_BUGS = new Set(["42601", "42P02", "42P18", "08P01"]);

/** Classes a later attempt can get past: connection, rollback (deadlock, serialization), resources, operator, system. */
const FOR_NOW = ["08", "40", "53", "55", "57", "58", "XX"];

const NETWORK = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

const CONNECTION_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end|PGlite is closed|Client was closed/i;

/** The DatabaseError for a driver failure, or undefined when the error is not the driver's (a bug of ours, or already typed). */
export function databaseError(error: unknown, describe: string): DatabaseError | undefined {
  if (error instanceof UserError) return undefined;
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code;
  const sqlState = typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  const text = oneLine(error.message);
  if (sqlState !== undefined) {
    if (OUR_BUGS.has(sqlState)) return undefined;
    const retryable = FOR_NOW.some((c) => sqlState.startsWith(c)) || sqlState === "42P01" || sqlState === "42703";
    return new DatabaseError(`${describe}: ${text} (SQLSTATE ${sqlState}).`, hintFor(sqlState), error, {
      code: sqlState,
      retryable,
    });
  }
  if ((typeof code === "string" && NETWORK.has(code)) || CONNECTION_MESSAGES.test(text)) {
    return new DatabaseError(
      `Lost ${describe}: ${text}${typeof code === "string" && !text.includes(code) ? ` (${code})` : ""}.`,
      "Check that the database is reachable, then run again.",
      error,
      { code: typeof code === "string" ? code : undefined, retryable: true },
    );
  }
  return undefined;
}

function hintFor(sqlState: string): string {
  if (sqlState === "42P01" || sqlState === "3F000")
    return "A table genstore needs is missing: run `genstore db status`, then `genstore db migrate`.";
  if (sqlState === "42501")
    return "The database role lacks a privilege genstore needs on that table or schema: grant it, then run again.";
  if (sqlState === "42703" || sqlState.startsWith("42"))
    return "The table does not have the shape genstore expects: run `genstore db check`.";
  if (sqlState.startsWith("23")) return "The row breaks a constraint of the table: see the message.";
  if (sqlState.startsWith("22") || sqlState.startsWith("54")) return "The value cannot be stored: see the message.";
  return "Check that the database is reachable and healthy, then run again.";
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim().replace(/\.$/, "");
}
