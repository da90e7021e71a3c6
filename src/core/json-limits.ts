// What a JSON body must respect to be storable as PostgreSQL jsonb and handled by
// genstore's own code: a bounded nesting depth (PostgreSQL's parser and JSON.stringify
// recurse, so tens of thousands of levels exhaust their stacks), numbers that both a double
// and PostgreSQL's numeric hold (1e200000 is Infinity here and overflows numeric there), and
// ids short enough for an index entry (a btree entry holds about 2.7 KB). A body that breaks
// one of these rules can never be stored, so the sender gets a 400, not a 503 it would retry.

import { utf8Length } from "./ids.ts";

/** Deeper than any prediction Replicate sends (inputs and metrics nest a few levels). */
export const MAX_JSON_DEPTH = 64;
/** numeric holds at most 16,383 digits after the decimal point. */
const MAX_NUMERIC_SCALE = 16_383;
/** Prediction ids and webhook-ids (Replicate's are about 30 characters). */
export const MAX_INDEXED_ID_BYTES = 256;

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?(?:[eE]([+-]?\d+))?/y;

/**
 * Why the JSON text cannot be stored, or undefined. One linear pass over the text that skips
 * strings with indexOf, so a 10 MiB body of logs costs a few milliseconds; it never
 * recurses. Malformed JSON is left to JSON.parse, which says so better.
 */
export function jsonTextProblem(text: string): string | undefined {
  let depth = 0;
  for (let i = 0; i < text.length;) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i = endOfString(text, i);
      continue;
    }
    if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > MAX_JSON_DEPTH) return `it nests deeper than ${MAX_JSON_DEPTH} levels`;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth -= 1;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      NUMBER.lastIndex = i;
      const match = NUMBER.exec(text);
      if (match === null) return undefined; // malformed: JSON.parse reports it
      const problem = numberProblem(match[0], match[1]?.length ?? 0, match[2]);
      if (problem !== undefined) return problem;
      i = NUMBER.lastIndex;
      continue;
    }
    i += 1;
  }
  return undefined;
}

/** The same rules for a value already parsed (a body stored by an older version, an API answer). */
export function jsonValueProblem(value: unknown): string | undefined {
  const stack: Array<{ value: unknown; depth: number }> = [{ value, depth: 0 }];
  while (stack.length > 0) {
    const { value: current, depth } = stack.pop()!;
    if (typeof current === "number") {
      if (!Number.isFinite(current)) return "it holds a number outside the range PostgreSQL and JavaScript share";
      continue;
    }
    if (current === null || typeof current !== "object") continue;
    if (depth + 1 > MAX_JSON_DEPTH) return `it nests deeper than ${MAX_JSON_DEPTH} levels`;
    for (const child of Array.isArray(current) ? current : Object.values(current))
      stack.push({ value: child, depth: depth + 1 });
  }
  return undefined;
}

/** Why an id (a prediction id, a webhook-id) cannot be indexed, or undefined. */
export function idLengthProblem(id: string): string | undefined {
  const bytes = utf8Length(id);
  return bytes > MAX_INDEXED_ID_BYTES ? `is ${bytes} bytes long, over the limit of ${MAX_INDEXED_ID_BYTES}` : undefined;
}

function numberProblem(token: string, fractionDigits: number, exponent: string | undefined): string | undefined {
  const shown = token.length > 24 ? `${token.slice(0, 24)}…` : token;
  if (!Number.isFinite(Number(token)))
    return `the number ${shown} is outside the range PostgreSQL and JavaScript share`;
  // Digits after the decimal point once the exponent is applied: 1e-20000 needs 20,000.
  const scale = Math.max(fractionDigits - 1, 0) - (exponent === undefined ? 0 : Number(exponent));
  if (scale > MAX_NUMERIC_SCALE)
    return `the number ${shown} is outside the range PostgreSQL and JavaScript share (too small)`;
  return undefined;
}

/** The index just past the string that opens at start (its closing quote), or text.length. */
function endOfString(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const quote = text.indexOf('"', i);
    if (quote === -1) return text.length;
    let backslashes = 0;
    for (let j = quote - 1; j > start && text.charCodeAt(j) === 0x5c; j--) backslashes += 1;
    if (backslashes % 2 === 0) return quote + 1;
    i = quote + 1;
  }
}
