import { buffer } from "node:stream/consumers";
import { describe, expect, it, onTestFinished } from "vitest";
import { ExitCode } from "../src/errors.ts";
import { openDownload, type DownloadPolicy } from "../src/pipeline/download.ts";
import {
  OutputExpiredError,
  OutputRefusedError,
  OutputRejectedError,
  OutputTooLargeError,
  OutputUnavailableError,
} from "../src/pipeline/errors.ts";
import { freePort } from "./support/moto.ts";
import { generatedBytes, startOutputServer } from "./support/output-server.ts";

async function server() {
  const s = await startOutputServer();
  onTestFinished(() => s.close());
  return s;
}

/** A policy admitting the test server, with fast retries. */
function policy(hostEntry: string, overrides: Partial<DownloadPolicy> = {}): DownloadPolicy {
  return {
    allowedHosts: [hostEntry],
    maxBytes: 10_000_000,
    // The production limits: a busy machine must not make a healthy download look stalled.
    // The tests of the timeouts set small ones against servers that really stall.
    headersTimeoutMs: 30_000,
    idleTimeoutMs: 30_000,
    ...overrides,
    retry: { baseDelayMs: 10, maxDelayMs: 3_000, ...overrides.retry },
  };
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a failure");
}

describe("openDownload: what may be fetched (SSRF)", () => {
  it("streams an allowed output with its length and type", async () => {
    const s = await server();
    const download = await openDownload(s.url("/png/out-0.png"), policy(s.hostEntry));
    expect(download).toMatchObject({
      status: 200,
      contentLength: s.bytes.png.length,
      contentType: "image/png",
      requests: 1,
    });
    expect(await buffer(download.body)).toEqual(s.bytes.png);
  });

  it.each([
    [
      "a host that is not allow-listed",
      (port: number) => `http://127.0.0.1:${port}/png/x.png`,
      ["replicate.delivery"],
      /not in the allowed output hosts: replicate\.delivery/,
    ],
    [
      "http to a host listed without a port",
      (port: number) => `http://127.0.0.1:${port}/png/x.png`,
      ["127.0.0.1"],
      /only 443 is allowed|only https/,
    ],
    [
      "another port of a host:port entry",
      (port: number) => `http://127.0.0.1:${port + 1}/png/x.png`,
      (port: number) => [`127.0.0.1:${port}`],
      /not in the allowed output hosts/,
    ],
    [
      "a listed name that resolves to loopback (no port entry)",
      () => "https://localhost/png/x.png",
      ["localhost"],
      /private address (127\.0\.0\.1|::1)/,
    ],
    [
      "an IP literal of a private address listed without a port",
      () => "https://127.0.0.1/png/x.png",
      ["127.0.0.1"],
      /private address 127\.0\.0\.1/,
    ],
    ["an IPv6 loopback literal", () => "https://[::1]/png/x.png", ["[::1]"], /private address ::1/],
    [
      "credentials in the URL",
      (port: number) => `http://user:pw@127.0.0.1:${port}/png/x.png`,
      (port: number) => [`127.0.0.1:${port}`],
      /credentials/,
    ],
    ["a file: URL", () => "file:///etc/passwd", ["replicate.delivery"], /only https/],
  ] as const)("refuses %s, without a request", async (_, url, hosts, message) => {
    const s = await server();
    const allowed = typeof hosts === "function" ? hosts(s.port) : [...hosts];
    const error = await failure(openDownload(url(s.port), policy(s.hostEntry, { allowedHosts: allowed })));
    expect(error).toBeInstanceOf(OutputRefusedError);
    expect((error as OutputRefusedError).exitCode).toBe(ExitCode.refused);
    expect((error as OutputRefusedError).retryable).toBe(false);
    expect(error.message).toMatch(message);
    expect(error.message).toContain(url(s.port).replace(/\/\/user:pw@/, "//user:pw@"));
    expect(s.requests).toEqual([]);
  });

  it("checks the address the socket connects to: a name resolving to the metadata address is refused", async () => {
    const s = await server();
    const resolve = async () => [{ address: "169.254.169.254", family: 4 }];
    const error = await failure(
      openDownload(
        "https://outputs.replicate.delivery/x.png",
        policy(s.hostEntry, { allowedHosts: ["replicate.delivery"], resolve }),
      ),
    );
    expect(error).toBeInstanceOf(OutputRefusedError);
    expect(error.message).toMatch(/private address 169\.254\.169\.254/);
  });

  it("refuses a name whose every address is private, even when one of them is loopback", async () => {
    const s = await server();
    const resolve = async () => [
      { address: "10.255.255.1", family: 4 },
      { address: "127.0.0.1", family: 4 },
    ];
    const error = await failure(
      openDownload(
        "https://cdn.replicate.delivery/a.png",
        policy(s.hostEntry, { allowedHosts: ["replicate.delivery"], resolve }),
      ),
    );
    expect(error.message).toMatch(/private address 10\.255\.255\.1/);
  });

  it("connects to the address its resolver checked (a name pinned to the test server)", async () => {
    const s = await server();
    const resolved: string[] = [];
    const resolve = async (host: string) => {
      resolved.push(host);
      return [{ address: "127.0.0.1", family: 4 }];
    };
    const download = await openDownload(
      `http://pinned.test:${s.port}/png/a.png`,
      policy(`pinned.test:${s.port}`, { resolve }),
    );
    expect((await buffer(download.body)).equals(s.bytes.png)).toBe(true);
    expect(resolved).toEqual(["pinned.test"]);
  });

  it("allows a private address for an explicit host:port entry (how tests and local mirrors work)", async () => {
    const s = await server();
    const download = await openDownload(`http://localhost:${s.port}/png/a.png`, policy(`localhost:${s.port}`));
    expect(await buffer(download.body)).toEqual(s.bytes.png);
  });

  it("follows a redirect to an allowed URL, checking it again", async () => {
    const s = await server();
    const download = await openDownload(
      s.url(`/redirect/a.png?to=${encodeURIComponent("/png/b.png")}`),
      policy(s.hostEntry),
    );
    expect(download.finalUrl).toBe(s.url("/png/b.png"));
    expect(await buffer(download.body)).toEqual(s.bytes.png);
    expect(s.requests.map((r) => r.path)).toEqual(["/redirect/a.png?to=%2Fpng%2Fb.png", "/png/b.png"]);
  });

  it.each([
    [
      "a host that is not allow-listed",
      "https://evil.example/x.png",
      /redirects to https:\/\/evil\.example\/x\.png, and output host evil\.example is not in the allowed/,
    ],
    [
      "the cloud metadata address",
      "http://169.254.169.254/latest/meta-data/",
      /redirects to http:\/\/169\.254\.169\.254/,
    ],
  ])("refuses a redirect to %s", async (_, target, message) => {
    const s = await server();
    const url = s.url(`/redirect/a.png?to=${encodeURIComponent(target)}`);
    const error = await failure(openDownload(url, policy(s.hostEntry)));
    expect(error).toBeInstanceOf(OutputRefusedError);
    expect(error.message).toMatch(message);
    expect(s.requests).toHaveLength(1);
  });

  it("gives up after 5 redirects", async () => {
    const s = await server();
    const error = await failure(openDownload(s.url("/redirect-loop/a.png"), policy(s.hostEntry)));
    expect(error).toBeInstanceOf(OutputRefusedError);
    expect(error.message).toMatch(/redirects more than 5 times/);
    expect(s.requests).toHaveLength(6);
  });
});

describe("openDownload: answers, retries and limits", () => {
  it.each([404, 410])("reports %i as an expired output, without retrying", async (status) => {
    const s = await server();
    const url = s.url(`/status/${status}/out-0.png`);
    const error = await failure(openDownload(url, policy(s.hostEntry)));
    expect(error).toBeInstanceOf(OutputExpiredError);
    expect(error.message).toBe(
      `Output ${url} answered ${status}: the file is gone (Replicate deletes API outputs about an hour after completion).`,
    );
    expect(s.requests).toHaveLength(1);
  });

  it("reports another 4xx as rejected, without retrying", async () => {
    const s = await server();
    const error = await failure(openDownload(s.url("/status/403/a.png"), policy(s.hostEntry)));
    expect(error).toBeInstanceOf(OutputRejectedError);
    expect(s.requests).toHaveLength(1);
  });

  it.each([500, 502, 503, 504])("retries %i with backoff, then succeeds", async (status) => {
    const s = await server();
    const retries: number[] = [];
    const download = await openDownload(
      s.url(`/flaky/2/${status}/a.png`),
      policy(s.hostEntry, { onRetry: (r) => retries.push(r.attempt) }),
    );
    expect(await buffer(download.body)).toEqual(s.bytes.png);
    expect(download.requests).toBe(3);
    expect(retries).toEqual([1, 2]);
  });

  it("gives up after the last attempt with a retryable error", async () => {
    const s = await server();
    const url = s.url("/flaky/10/503/a.png");
    const error = await failure(openDownload(url, policy(s.hostEntry, { retry: { maxAttempts: 3 } })));
    expect(error).toBeInstanceOf(OutputUnavailableError);
    expect((error as OutputUnavailableError).retryable).toBe(true);
    expect(error.message).toBe(`Could not download output ${url}: it answered 503 3 times.`);
    expect(s.requests).toHaveLength(3);
  });

  it("waits at least Retry-After after a 429", async () => {
    const s = await server();
    const delays: number[] = [];
    const download = await openDownload(
      s.url("/throttle/1/a.png"),
      policy(s.hostEntry, { onRetry: (r) => delays.push(r.delayMs) }),
    );
    await buffer(download.body);
    expect(delays).toEqual([1000]);
    expect(s.requests[1]!.at - s.requests[0]!.at).toBeGreaterThanOrEqual(990);
  });

  it("does not wait for a Retry-After longer than its longest wait", async () => {
    const s = await server();
    const error = await failure(openDownload(s.url("/throttle/120/a.png"), policy(s.hostEntry)));
    expect(error).toBeInstanceOf(OutputUnavailableError);
    expect(error.message).toMatch(
      /answered 429 and asked to wait 120 s \(Retry-After\), longer than the 3 s genstore waits/,
    );
  });

  it("retries a refused connection, then reports it", async () => {
    const port = await freePort();
    const error = await failure(
      openDownload(`http://127.0.0.1:${port}/a.png`, policy(`127.0.0.1:${port}`, { retry: { maxAttempts: 2 } })),
    );
    expect(error).toBeInstanceOf(OutputUnavailableError);
    expect(error.message).toMatch(/ECONNREFUSED \(after 2 attempts\)/);
  });

  it("times out a server that never answers, retrying it", async () => {
    const s = await server();
    const error = await failure(
      openDownload(
        s.url("/no-headers/a.png"),
        policy(s.hostEntry, { retry: { maxAttempts: 2 }, headersTimeoutMs: 200 }),
      ),
    );
    expect(error).toBeInstanceOf(OutputUnavailableError);
    expect(error.message).toMatch(/no answer within 0\.2 s \(after 2 attempts\)/);
    expect(s.requests).toHaveLength(2);
  });

  it("refuses a Content-Length over the limit before reading the body", async () => {
    const s = await server();
    const url = s.url("/bytes/5000000/big.bin");
    const error = await failure(openDownload(url, policy(s.hostEntry, { maxBytes: 1_000_000 })));
    expect(error).toBeInstanceOf(OutputTooLargeError);
    expect(error.message).toBe(`Output ${url} is 5000000 bytes, over the limit of 1000000 bytes; nothing was stored.`);
  });

  it("counts the bytes of a body without Content-Length and stops past the limit", async () => {
    const s = await server();
    const download = await openDownload(
      s.url("/chunked/5000000/big.bin"),
      policy(s.hostEntry, { maxBytes: 1_000_000 }),
    );
    expect(download.contentLength).toBeNull();
    const error = await failure(buffer(download.body));
    expect(error).toBeInstanceOf(OutputTooLargeError);
    expect(error.message).toMatch(/sent more than 1000000 bytes/);
  });

  it("streams a body of exactly the limit", async () => {
    const s = await server();
    const download = await openDownload(s.url("/chunked/300000/ok.bin"), policy(s.hostEntry, { maxBytes: 300_000 }));
    expect((await buffer(download.body)).equals(generatedBytes(300_000))).toBe(true);
  });

  it("aborts a body that stalls (idle timeout)", async () => {
    const s = await server();
    const download = await openDownload(s.url("/stall/1000/a.bin"), policy(s.hostEntry, { idleTimeoutMs: 300 }));
    const error = await failure(buffer(download.body));
    expect(error).toBeInstanceOf(OutputUnavailableError);
    expect(error.message).toMatch(/no data for 0\.3 s after 1000 bytes/);
  });

  it("does not time out while the reader is slow (backpressure is not a stalled server)", async () => {
    const s = await server();
    // Not reading for 3 idle timeouts: the server is held back by backpressure, not stalled.
    const download = await openDownload(s.url("/bytes/5000000/a.bin"), policy(s.hostEntry, { idleTimeoutMs: 1_000 }));
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect((await buffer(download.body)).length).toBe(5_000_000);
  });

  it("reports a body cut short (fewer bytes than Content-Length)", async () => {
    const s = await server();
    const download = await openDownload(s.url("/short/5000/1000/a.bin"), policy(s.hostEntry));
    const error = await failure(buffer(download.body));
    expect(error).toBeInstanceOf(OutputUnavailableError);
    expect((error as OutputUnavailableError).retryable).toBe(true);
  });

  it("stops when its signal aborts", async () => {
    const s = await server();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stopped by the test")), 100);
    const error = await failure(openDownload(s.url("/no-headers/a.png"), policy(s.hostEntry), controller.signal));
    expect(error.message).toBe("stopped by the test");
  });
});
