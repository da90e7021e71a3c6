import type { z as zod } from "zod";

// Rules several commands' options share, for Context.parse's schemas: one wording of each.

/** A whole number from min to max, from an option's text (--concurrency 8, --port 0). */
export function wholeNumber(z: typeof zod, min: number, max: number) {
  const range = `must be a whole number from ${min.toLocaleString("en-US")} to ${max.toLocaleString("en-US")}`;
  return z.coerce.number(range).int(range).min(min, range).max(max, range);
}
