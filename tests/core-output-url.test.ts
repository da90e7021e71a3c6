import { describe, expect, it } from "vitest";
import {
  addressAllowed,
  answerKind,
  checkOutputUrl,
  isPrivateAddress,
  parseAllowEntry,
} from "../src/core/output-url.ts";

const DEFAULT = ["replicate.delivery"];
const TESTS = ["replicate.delivery", "127.0.0.1:4567"];

describe("checkOutputUrl: allowed", () => {
  it.each([
    ["the default host over https", "https://replicate.delivery/xezq/abc/out-0.webp", DEFAULT, "replicate.delivery"],
    ["a subdomain of the default host", "https://pbxt.replicate.delivery/abc/out.png", DEFAULT, "replicate.delivery"],
    ["a deeper subdomain", "https://a.b.replicate.delivery/out.png", DEFAULT, "replicate.delivery"],
    ["an explicit :443", "https://replicate.delivery:443/out.png", DEFAULT, "replicate.delivery"],
    ["upper-case host", "https://REPLICATE.Delivery/out.png", DEFAULT, "replicate.delivery"],
    ["a trailing dot on the host", "https://replicate.delivery./out.png", DEFAULT, "replicate.delivery"],
    ["http on an explicit host:port entry (tests)", "http://127.0.0.1:4567/out.png", TESTS, "127.0.0.1:4567"],
    [
      "https on an explicit host:port entry",
      "https://files.example.com:8443/o.png",
      ["files.example.com:8443"],
      "files.example.com:8443",
    ],
    ["an IPv6 host:port entry", "http://[::1]:4567/o.png", ["[::1]:4567"], "[::1]:4567"],
  ])("%s", (_, url, allowed, entry) => {
    const result = checkOutputUrl(url, allowed);
    expect(result).toMatchObject({ ok: true, matchedEntry: entry });
    expect(result.ok && result.url).toBeInstanceOf(URL);
  });
});

describe("checkOutputUrl: refused", () => {
  it.each([
    ["http on the default host", "http://replicate.delivery/out.png", DEFAULT, /only https/],
    ["another port on the default host", "https://replicate.delivery:8443/out.png", DEFAULT, /port 8443/],
    ["a look-alike that is not a subdomain", "https://evilreplicate.delivery/out.png", DEFAULT, /not in the allowed/],
    [
      "the allowed host as a subdomain of another",
      "https://replicate.delivery.evil.com/out.png",
      DEFAULT,
      /not in the allowed/,
    ],
    ["userinfo in the URL", "https://user:pass@replicate.delivery/out.png", DEFAULT, /credentials/],
    ["a user name alone", "https://replicate.delivery@evil.com/out.png", DEFAULT, /credentials/],
    ["a file: URL", "file:///etc/passwd", DEFAULT, /file:/],
    ["a data: URL", "data:image/png;base64,AAAA", DEFAULT, /data:/],
    ["an ftp: URL", "ftp://replicate.delivery/out.png", DEFAULT, /ftp:/],
    ["a non-URL", "not a url", DEFAULT, /not a valid URL/],
    ["a private IP literal not listed", "https://10.0.0.1/out.png", DEFAULT, /not in the allowed/],
    ["the metadata service", "http://169.254.169.254/latest/meta-data/", DEFAULT, /only https|not in the allowed/],
    ["a host:port entry on another port", "http://127.0.0.1:9999/out.png", TESTS, /not in the allowed/],
    [
      "a host:port entry does not admit subdomains",
      "https://x.files.example.com:8443/o.png",
      ["files.example.com:8443"],
      /not in the allowed/,
    ],
    ["anything when the list is empty", "https://replicate.delivery/out.png", [], /\(none\)/],
  ])("%s", (_, url, allowed, reason) => {
    const result = checkOutputUrl(url, allowed);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(reason);
  });
});

describe("parseAllowEntry", () => {
  it.each([
    ["replicate.delivery", { raw: "replicate.delivery", host: "replicate.delivery", port: null }],
    [" Replicate.Delivery ", { raw: "replicate.delivery", host: "replicate.delivery", port: null }],
    ["127.0.0.1:4567", { raw: "127.0.0.1:4567", host: "127.0.0.1", port: "4567" }],
    ["[::1]:8080", { raw: "[::1]:8080", host: "[::1]", port: "8080" }],
    ["", undefined],
    ["https://replicate.delivery", undefined],
    ["a:b:c", undefined],
  ])("%j", (entry, expected) => {
    expect(parseAllowEntry(entry)).toEqual(expected);
  });
});

describe("isPrivateAddress", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback /8"],
    ["10.0.0.1", "private 10/8"],
    ["172.16.0.1", "private 172.16/12 start"],
    ["172.31.255.255", "private 172.16/12 end"],
    ["192.168.1.1", "private 192.168/16"],
    ["169.254.169.254", "link-local (cloud metadata)"],
    ["0.0.0.0", "this network"],
    ["100.64.0.1", "CGNAT"],
    ["100.127.255.255", "CGNAT end"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["::1", "IPv6 loopback"],
    ["::", "IPv6 unspecified"],
    ["fe80::1", "IPv6 link-local"],
    ["febf::1", "IPv6 link-local end of fe80::/10"],
    ["fe80::1%eth0", "IPv6 link-local with a zone"],
    ["fc00::1", "unique-local fc00::/7"],
    ["fd12:3456::1", "unique-local fd"],
    ["ff02::1", "IPv6 multicast"],
    ["::ffff:127.0.0.1", "IPv4-mapped loopback"],
    ["::ffff:10.0.0.1", "IPv4-mapped private"],
    ["::ffff:7f00:1", "IPv4-mapped loopback in hex"],
    ["0:0:0:0:0:ffff:169.254.169.254", "IPv4-mapped metadata, long form"],
    ["[::1]", "bracketed loopback"],
    ["64:ff9b::10.0.0.1", "NAT64 of a private address"],
    ["not-an-ip", "not an address (fails closed)"],
    ["1::2::3", "malformed IPv6 (fails closed)"],
    ["256.1.1.1", "malformed IPv4 (fails closed)"],
  ])("%s is private (%s)", (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });

  it.each([
    ["8.8.8.8"],
    ["172.15.255.255"],
    ["172.32.0.1"],
    ["100.63.255.255"],
    ["100.128.0.1"],
    ["169.253.1.1"],
    ["34.120.1.2"],
    ["2606:4700:4700::1111"],
    ["2001:db8::1"],
    ["::ffff:8.8.8.8"],
    ["2a00:1450:4001::1"],
  ])("%s is public", (ip) => {
    expect(isPrivateAddress(ip)).toBe(false);
  });
});

describe("addressAllowed", () => {
  it.each([
    ["a public address through a host entry", "104.18.1.1", "replicate.delivery", DEFAULT, true],
    ["a private address through a host entry (DNS rebinding)", "10.0.0.1", "replicate.delivery", DEFAULT, false],
    ["IPv4-mapped loopback through a host entry", "::ffff:127.0.0.1", "replicate.delivery", DEFAULT, false],
    ["the metadata address through a host entry", "169.254.169.254", "replicate.delivery", DEFAULT, false],
    ["loopback through an explicit host:port entry (tests)", "127.0.0.1", "127.0.0.1:4567", TESTS, true],
    ["loopback through a host:port entry that is not in the list", "127.0.0.1", "127.0.0.1:4567", DEFAULT, false],
    ["IPv6 loopback through an explicit [::1]:port entry", "::1", "[::1]:4567", ["[::1]:4567"], true],
  ])("%s → %s", (_, ip, entry, allowed, expected) => {
    const result = addressAllowed(ip, entry, allowed);
    expect(result.ok).toBe(expected);
    if (!result.ok) expect(result.reason).toMatch(/private address/);
  });
});

describe("answerKind (what a download does with an HTTP status)", () => {
  it.each([
    [200, "ok"],
    [206, "ok"],
    [301, "redirect"],
    [302, "redirect"],
    [303, "redirect"],
    [307, "redirect"],
    [308, "redirect"],
    [304, "fail"],
    [404, "expired"],
    [410, "expired"],
    [400, "fail"],
    [401, "fail"],
    [403, "fail"],
    [408, "retry"],
    [425, "retry"],
    [429, "retry"],
    [500, "retry"],
    [502, "retry"],
    [503, "retry"],
    [504, "retry"],
    [599, "retry"],
    [100, "fail"],
  ] as const)("%i → %s", (status, kind) => {
    expect(answerKind(status)).toBe(kind);
  });
});
