// What an output's first bytes say it is. A host on the allow-list can still serve anything
// (an error page as image/png, a proxy's HTML): the type stored is the one the bytes show,
// and bytes that are no image or video are not stored as one.

/** Bytes needed to tell every type below apart. */
export const SNIFF_BYTES = 16;

export interface SniffedType {
  contentType: string;
  /** A short name for messages ("PNG", "MP4"). */
  name: string;
}

const ascii = (bytes: Uint8Array, start: number, text: string) =>
  bytes.length >= start + text.length && [...text].every((c, i) => bytes[start + i] === c.charCodeAt(0));

/** ISO base media (MP4 family) brands that are images or QuickTime rather than MP4 video. */
const BRANDS: Record<string, SniffedType> = {
  avif: { contentType: "image/avif", name: "AVIF" },
  avis: { contentType: "image/avif", name: "AVIF" },
  heic: { contentType: "image/heic", name: "HEIC" },
  heix: { contentType: "image/heic", name: "HEIC" },
  mif1: { contentType: "image/heif", name: "HEIF" },
  msf1: { contentType: "image/heif", name: "HEIF" },
  "qt  ": { contentType: "video/quicktime", name: "QuickTime" },
};

/**
 * The media type the first bytes show (PNG, JPEG, GIF, WebP, the MP4 family with AVIF, HEIC
 * and QuickTime, WebM/Matroska), or undefined when they show none of them. Give it at least
 * SNIFF_BYTES bytes when the body has that many.
 */
export function sniffMediaType(bytes: Uint8Array): SniffedType | undefined {
  if (bytes.length >= 8 && [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => bytes[i] === b))
    return { contentType: "image/png", name: "PNG" };
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff)
    return { contentType: "image/jpeg", name: "JPEG" };
  if (ascii(bytes, 0, "GIF87a") || ascii(bytes, 0, "GIF89a")) return { contentType: "image/gif", name: "GIF" };
  if (ascii(bytes, 0, "RIFF") && ascii(bytes, 8, "WEBP")) return { contentType: "image/webp", name: "WebP" };
  if (ascii(bytes, 4, "ftyp") && bytes.length >= 12) {
    const brand = String.fromCharCode(...bytes.subarray(8, 12));
    return BRANDS[brand] ?? { contentType: "video/mp4", name: "MP4" };
  }
  if (bytes.length >= 4 && bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3)
    return { contentType: "video/webm", name: "WebM" };
  return undefined;
}

/** A few words about bytes that are not media, for the error on the row ("text starting <!DOCTYPE html>"). */
export function describeUnknownBytes(bytes: Uint8Array): string {
  if (bytes.length === 0) return "an empty body";
  const text = String.fromCharCode(...bytes.subarray(0, SNIFF_BYTES));
  if (/^[\t\n\r\x20-\x7e]+$/.test(text)) return `text starting ${JSON.stringify(text.trim())}`;
  const hex = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  return `bytes starting ${hex}`;
}
