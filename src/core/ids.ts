// userId and record ids become path segments of storage keys, so anything that could
// escape its folder or confuse a listing is refused before a key is ever built.

// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const MAX_SEGMENT = 200;

/** Why value is not a safe single path segment, or undefined when it is. */
export function unsafeSegmentReason(value: unknown): string | undefined {
  if (typeof value !== "string" || value === "") return "is empty";
  if (value.length > MAX_SEGMENT) return `is longer than ${MAX_SEGMENT} characters`;
  if (value.includes("/") || value.includes("\\")) return "contains a slash";
  if (value.includes("..")) return 'contains ".."';
  if (value === ".") return 'is "."';
  if (CONTROL.test(value)) return "contains a control character";
  if (value.trim() !== value) return "starts or ends with whitespace";
  return undefined;
}

export function isSafeSegment(value: unknown): value is string {
  return unsafeSegmentReason(value) === undefined;
}

/** Throws (with the caller's error type) when value is not a safe path segment. */
export function assertSafeSegment(
  what: string,
  value: unknown,
  makeError: (message: string) => Error = (m) => new Error(m),
): asserts value is string {
  const reason = unsafeSegmentReason(value);
  if (reason !== undefined) {
    throw makeError(`Refusing ${what} ${JSON.stringify(value)}: it ${reason}, so it could escape its storage folder.`);
  }
}
