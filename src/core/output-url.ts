// Which output URLs genstore may download from, which resolved addresses it may connect
// to, and what a download does with each HTTP answer. Pure rules; the downloader
// (src/pipeline/download.ts) resolves DNS and calls addressAllowed for every address.
//
// Allow-list entries (GENSTORE_OUTPUT_HOSTS):
//   "host"       admits host and its subdomains, over https on the default port (443) only.
//   "host:port"  admits exactly that host and port (no subdomains), over https or http, and
//                its addresses may be private (this is how tests use 127.0.0.1:PORT).
//   IPv6 hosts are written in brackets: "[::1]:8080".
// Hosts are compared lower-case and without a trailing dot.

export type AllowEntry = { raw: string; host: string; port: string | null };

export type OutputUrlCheck = { ok: true; url: URL; matchedEntry: string } | { ok: false; reason: string };

function normalizeHost(host: string): string {
  return host.trim().toLowerCase().replace(/\.$/, "");
}

/** Parses one allow-list entry; undefined for an empty or malformed one. */
export function parseAllowEntry(entry: string): AllowEntry | undefined {
  const raw = entry.trim().toLowerCase();
  if (raw === "") return undefined;
  const bracketed = /^(\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/.exec(raw);
  if (bracketed) return { raw, host: bracketed[1]!, port: bracketed[2] ?? null };
  const parts = raw.split(":");
  if (parts.length === 1) return /^[a-z0-9.-]+$/.test(raw) ? { raw, host: normalizeHost(raw), port: null } : undefined;
  if (parts.length === 2 && /^[a-z0-9.-]+$/.test(parts[0]!) && /^\d{1,5}$/.test(parts[1]!)) {
    return { raw, host: normalizeHost(parts[0]!), port: String(Number(parts[1])) };
  }
  return undefined;
}

function effectivePort(url: URL): string {
  if (url.port !== "") return url.port;
  return url.protocol === "https:" ? "443" : "80";
}

function entryAdmits(entry: AllowEntry, url: URL, hostname: string): boolean {
  if (entry.port !== null) return hostname === entry.host && effectivePort(url) === entry.port;
  const hostOk = hostname === entry.host || hostname.endsWith(`.${entry.host}`);
  return hostOk && url.protocol === "https:" && effectivePort(url) === "443";
}

/** Whether url may be downloaded under the allow-list (see the rules at the top). */
export function checkOutputUrl(url: string, allowedHosts: string[]): OutputUrlCheck {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: `output URL ${JSON.stringify(url)} is not a valid URL` };
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    return {
      ok: false,
      reason: `output URL uses ${parsed.protocol} — only https (or http for an explicit host:port entry) is allowed`,
    };
  }
  if (parsed.username !== "" || parsed.password !== "") {
    return { ok: false, reason: "output URL contains credentials (user:password@), which is refused" };
  }
  const hostname = normalizeHost(parsed.hostname);
  if (hostname === "") return { ok: false, reason: "output URL has no host" };
  const entries = allowedHosts.map(parseAllowEntry).filter((e): e is AllowEntry => e !== undefined);
  // Explicit host:port entries first: they are the operator's most specific grant.
  const ordered = [...entries.filter((e) => e.port !== null), ...entries.filter((e) => e.port === null)];
  const matched = ordered.find((entry) => entryAdmits(entry, parsed, hostname));
  if (matched) return { ok: true, url: parsed, matchedEntry: matched.raw };
  const sameHost = entries.some((e) => e.port === null && (hostname === e.host || hostname.endsWith(`.${e.host}`)));
  if (sameHost && parsed.protocol !== "https:") {
    return {
      ok: false,
      reason: `output URL uses http for ${hostname}: only https is allowed (list "host:port" to allow http)`,
    };
  }
  if (sameHost)
    return {
      ok: false,
      reason: `output URL uses port ${effectivePort(parsed)} on ${hostname}: only 443 is allowed (list "host:port" to allow another)`,
    };
  const listed = entries.map((e) => e.raw).join(", ") || "(none)";
  return { ok: false, reason: `output host ${parsed.host} is not in the allowed output hosts: ${listed}` };
}

// --- Addresses ---------------------------------------------------------------------------

function parseIPv4(ip: string): number[] | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : NaN));
  return bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255) ? bytes : undefined;
}

/** Eight 16-bit groups, or undefined. Accepts "::", an embedded IPv4 tail and a %zone. */
function parseIPv6(input: string): number[] | undefined {
  let ip = input
    .replace(/^\[|\]$/g, "")
    .replace(/%.*$/, "")
    .toLowerCase();
  let tail: number[] = [];
  const lastColon = ip.lastIndexOf(":");
  if (ip.includes(".")) {
    const v4 = parseIPv4(ip.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    // Keep "::" when the IPv4 part follows it; otherwise drop the separating colon.
    ip = ip[lastColon - 1] === ":" ? ip.slice(0, lastColon + 1) : ip.slice(0, lastColon);
  }
  const halves = ip.split("::");
  if (halves.length > 2) return undefined;
  const toGroups = (s: string) => (s === "" ? [] : s.split(":"));
  const head = toGroups(halves[0]!);
  const rest = halves.length === 2 ? toGroups(halves[1]!) : [];
  if (![...head, ...rest].every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  const known = head.length + rest.length + tail.length;
  if (halves.length === 1 && known !== 8) return undefined;
  if (halves.length === 2 && known > 7) return undefined;
  const zeros = new Array<number>(8 - known).fill(0);
  return [...head.map((g) => parseInt(g, 16)), ...zeros, ...rest.map((g) => parseInt(g, 16)), ...tail];
}

function inV4(bytes: number[], base: [number, number, number, number], bits: number): boolean {
  const value = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
  const baseValue = ((base[0] << 24) | (base[1] << 16) | (base[2] << 8) | base[3]) >>> 0;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (value & mask) >>> 0 === (baseValue & mask) >>> 0;
}

const PRIVATE_V4: [[number, number, number, number], number][] = [
  [[0, 0, 0, 0], 8], // "this network"
  [[10, 0, 0, 0], 8], // private
  [[100, 64, 0, 0], 10], // CGNAT
  [[127, 0, 0, 0], 8], // loopback
  [[169, 254, 0, 0], 16], // link-local (cloud metadata 169.254.169.254)
  [[172, 16, 0, 0], 12], // private
  [[192, 0, 0, 0], 24], // IETF protocol assignments
  [[192, 168, 0, 0], 16], // private
  [[198, 18, 0, 0], 15], // benchmarking
  [[224, 0, 0, 0], 4], // multicast
  [[240, 0, 0, 0], 4], // reserved, broadcast
];

function isPrivateV4(bytes: number[]): boolean {
  return PRIVATE_V4.some(([base, bits]) => inV4(bytes, base, bits));
}

function v4FromGroups(hi: number, lo: number): number[] {
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff];
}

/**
 * Whether ip (IPv4 dotted quad or IPv6, brackets and %zone tolerated) is loopback, private,
 * link-local, unique-local, CGNAT, "this network", multicast or reserved. IPv6 forms that
 * embed an IPv4 address (::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::/96, 2002::/16) are judged by
 * that address. Fails closed: a string that is not an IP address counts as private.
 */
export function isPrivateAddress(ip: string): boolean {
  const v4 = parseIPv4(ip.trim());
  if (v4) return isPrivateV4(v4);
  const g = parseIPv6(ip.trim());
  if (!g) return true;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [number, number, number, number, number, number, number, number];
  const firstFiveZero = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0;
  if (firstFiveZero && (g5 === 0xffff || g5 === 0)) {
    if (g5 === 0 && g6 === 0 && (g7 === 0 || g7 === 1)) return true; // :: and ::1
    return isPrivateV4(v4FromGroups(g6, g7)); // IPv4-mapped / IPv4-compatible
  }
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0)
    return isPrivateV4(v4FromGroups(g6, g7)); // NAT64
  if (g0 === 0x2002) return isPrivateV4(v4FromGroups(g1, g2)); // 6to4
  if ((g0 & 0xffc0) === 0xfe80) return true; // link-local fe80::/10
  if ((g0 & 0xffc0) === 0xfec0) return true; // site-local (deprecated) fec0::/10
  if ((g0 & 0xfe00) === 0xfc00) return true; // unique-local fc00::/7
  if ((g0 & 0xff00) === 0xff00) return true; // multicast ff00::/8
  return false;
}

export type AddressCheck = { ok: true } | { ok: false; reason: string };

/**
 * Whether the downloader may connect to ip, a resolved address of a URL that checkOutputUrl
 * admitted through hostEntryMatched. A private address is refused unless that entry is an
 * explicit "host:port" entry present in allowedHosts (the operator named it exactly).
 */
export function addressAllowed(ip: string, hostEntryMatched: string, allowedHosts: string[]): AddressCheck {
  if (!isPrivateAddress(ip)) return { ok: true };
  const matched = parseAllowEntry(hostEntryMatched);
  const listed = allowedHosts
    .map(parseAllowEntry)
    .some((e) => e !== undefined && matched !== undefined && e.raw === matched.raw);
  if (matched && matched.port !== null && listed) return { ok: true };
  return {
    ok: false,
    reason: `output host resolves to private address ${ip}, which is refused (only an explicit "host:port" allow-list entry may reach one)`,
  };
}

export type AnswerKind = "ok" | "redirect" | "expired" | "retry" | "fail";

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * What a download does with an HTTP status:
 *   2xx → ok; 301/302/303/307/308 → redirect (checked again, followed by hand);
 *   404/410 → expired (Replicate deleted the file: retrying cannot help);
 *   408, 425, 429 and 5xx → retry with backoff (BACKOFF.download); anything else → fail.
 */
export function answerKind(status: number): AnswerKind {
  if (status >= 200 && status < 300) return "ok";
  if (REDIRECTS.has(status)) return "redirect";
  if (status === 404 || status === 410) return "expired";
  if (status === 408 || status === 425 || status === 429 || (status >= 500 && status < 600)) return "retry";
  return "fail";
}
