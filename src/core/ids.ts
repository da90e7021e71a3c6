// userId and record ids become path segments of storage keys, so anything that could
// escape its folder, confuse a listing or be refused by a provider later is refused before a
// key is ever built. One rule, in bytes (what file systems and S3 count), for every segment:
//   - not empty, not "." or "..", no "/", "\" or "..";
//   - not starting with "." (names starting with a dot belong to the local provider:
//     sidecars and temp files) and no leading or trailing whitespace;
//   - no control characters, and none of the invisible or look-alike characters that make
//     two different userIds read the same in a listing: bidi controls, zero-width
//     characters, and full-width or other look-alikes of "/", "\" and ".";
//   - at most MAX_SEGMENT_BYTES UTF-8 bytes for a folder (a userId), and MAX_ID_BYTES for the
//     id that starts a file name (`<id>_<n>.<ext>` must fit a segment too).
// With those limits a whole key (thumbnails/<context>/<userId>/<id>_<n>.<ext>) stays far
// below S3's 1,024 bytes; storageKeyProblem (keys.ts) checks the whole key anyway.

/** A path segment: leaves room under the usual 255-byte file name limit for the local provider's temp-file names. */
export const MAX_SEGMENT_BYTES = 200;
/** An id that starts a file name: `_<index>.<ext>` (at most 1 + 10 + 1 + 8 bytes) still fits a segment. */
export const MAX_ID_BYTES = MAX_SEGMENT_BYTES - 20;

// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
export const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** Bidi controls and marks: reorder what a listing shows. */
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
/** Zero-width and invisible characters: two userIds that look the same. */
const INVISIBLE = new RegExp(
  [
    "[\\u00ad\\u115f\\u1160\\u17b4\\u17b5\\u200b\\u200c\\u2060-\\u2064\\u3164\\ufeff\\uffa0]",
    // Joiners and variation selectors combine with the character before them: listed one by one.
    ...["\\u200d", "\\u034f", "\\u180b", "\\u180c", "\\u180d", "\\u180e", "\\u180f"],
    ...Array.from({ length: 16 }, (_, i) => `\\ufe0${i.toString(16)}`),
  ].join("|"),
);
/** Look-alikes of "/", "\" and "." (full-width, fraction and division slashes, ideographic stops, one-dot leader). */
const LOOKALIKE = /[\u2024\u2044\u2215\u2216\u29f5\u29f8\u29f9\u3002\ufe52\ufe68\uff0e\uff0f\uff3c\uff61]/;

/** Bytes of value in UTF-8, without an encoder (a lone surrogate counts as the 3 bytes U+FFFD takes). */
export function utf8Length(value: string): number {
  let bytes = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i += 1;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** Why value is not a safe single path segment (a userId, a folder), or undefined when it is. */
export function unsafeSegmentReason(value: unknown, maxBytes: number = MAX_SEGMENT_BYTES): string | undefined {
  if (typeof value !== "string" || value === "") return "is empty";
  const bytes = utf8Length(value);
  if (bytes > maxBytes) return `is ${bytes} bytes long in UTF-8, over the limit of ${maxBytes}`;
  if (value.includes("/") || value.includes("\\")) return "contains a slash";
  if (value.includes("..")) return 'contains ".."';
  if (value.startsWith(".")) return 'starts with "." (reserved for genstore\'s own files)';
  if (CONTROL.test(value)) return "contains a control character";
  if (BIDI.test(value)) return "contains a bidi control character";
  if (INVISIBLE.test(value)) return "contains a zero-width or invisible character";
  if (LOOKALIKE.test(value)) return 'contains a look-alike of "/", "\\" or "."';
  if (value.trim() !== value) return "starts or ends with whitespace";
  return undefined;
}

/** Why value cannot be a record id (the start of a file name: `<id>_<n>.<ext>`), or undefined. */
export function unsafeIdReason(value: unknown): string | undefined {
  return unsafeSegmentReason(value, MAX_ID_BYTES);
}

export function isSafeSegment(value: unknown): value is string {
  return unsafeSegmentReason(value) === undefined;
}

/** Throws (with the caller's error type) when value is not a safe path segment. */
export function assertSafeSegment(
  what: string,
  value: unknown,
  makeError: (message: string) => Error = (m) => new Error(m),
  maxBytes: number = MAX_SEGMENT_BYTES,
): asserts value is string {
  const reason = unsafeSegmentReason(value, maxBytes);
  if (reason !== undefined) {
    throw makeError(`Refusing ${what} ${JSON.stringify(value)}: it ${reason}, so it cannot be part of a storage key.`);
  }
}
