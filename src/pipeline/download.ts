import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { Transform, pipeline, type Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { describeUnknownBytes, SNIFF_BYTES, sniffMediaType, type SniffedType } from "../core/media-type.ts";
import { BACKOFF, backoffDelay, parseRetryAfter, type BackoffPolicy } from "../core/backoff.ts";
import { addressAllowed, answerKind, checkOutputUrl } from "../core/output-url.ts";
import {
  OutputError,
  OutputExpiredError,
  OutputNotMediaError,
  OutputRefusedError,
  OutputRejectedError,
  OutputTooLargeError,
  OutputUnavailableError,
} from "./errors.ts";

// Opens an output URL as a stream, under the download policy:
//   - only URLs admitted by checkOutputUrl (the GENSTORE_OUTPUT_HOSTS allow-list), and every
//     redirect hop checked again (followed by hand, at most maxRedirects);
//   - the socket connects only to an address checked by addressAllowed: the check runs inside
//     the `lookup` given to node:http(s), so the address checked is the address used (no
//     DNS-rebinding gap); IP-literal hosts, which skip lookup, are checked before the request;
//   - size limit: a Content-Length over maxBytes is refused before reading, and the bytes are
//     counted while streaming (the body errors as soon as it passes maxBytes);
//   - a deadline for connecting and receiving the headers, and an idle timeout on the body;
//   - retries with BACKOFF.download on 5xx, 408, 425, 429 (Retry-After honoured as a
//     minimum, and one longer than its longest wait gives up) and network errors, but only
//     before the body starts;
//   - 404/410 → OutputExpiredError. Every error is an OutputError (src/pipeline/errors.ts).

export type Resolver = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

export interface DownloadPolicy {
  /** GENSTORE_OUTPUT_HOSTS. */
  allowedHosts: string[];
  /** GENSTORE_MAX_OUTPUT_BYTES. */
  maxBytes: number;
  /** Requests per URL and the waits between them (default BACKOFF.download); a Retry-After longer than maxDelayMs gives up. */
  retry?: Partial<BackoffPolicy>;
  /** Connect and receive the response headers within this (default 30 s). */
  headersTimeoutMs?: number;
  /** Abort the body when no byte arrives for this long (default 30 s). */
  idleTimeoutMs?: number;
  /** Default 5. */
  maxRedirects?: number;
  /** Name resolution (default: the system's, as node:http uses). Tests may pin names to addresses. */
  resolve?: Resolver;
  /** Told before each wait between attempts. */
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
}

export interface Download {
  /** The URL asked for. */
  url: string;
  /** The URL that answered, after redirects. */
  finalUrl: string;
  status: number;
  /** From Content-Length, when the server sent one. */
  contentLength: number | null;
  contentType: string | null;
  /** The body, counted against maxBytes; errors with an OutputError when cut short or stalled. Destroy it to stop. */
  body: Readable;
  /** Requests made, redirects and retries included. */
  requests: number;
}

type Policy = Required<Omit<DownloadPolicy, "resolve" | "onRetry" | "retry">> &
  Pick<DownloadPolicy, "resolve" | "onRetry"> & { retry: BackoffPolicy };

const DEFAULTS = {
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
  maxRedirects: 5,
};

/** Network failures worth another attempt (the request never got an answer). */
const RETRYABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
]);

const systemResolver: Resolver = (hostname) => dns.promises.lookup(hostname, { all: true, order: "verbatim" });

export async function openDownload(url: string, policy: DownloadPolicy, signal?: AbortSignal): Promise<Download> {
  const p: Policy = {
    ...DEFAULTS,
    ...definedOnly(policy),
    allowedHosts: policy.allowedHosts,
    maxBytes: policy.maxBytes,
    retry: { ...BACKOFF.download, ...definedOnly(policy.retry ?? {}) },
  };
  let current = url;
  let redirects = 0;
  let attempt = 0;
  let requests = 0;
  for (;;) {
    signal?.throwIfAborted();
    const checked = checkOutputUrl(current, p.allowedHosts);
    if (!checked.ok)
      throw new OutputRefusedError(
        url,
        redirects > 0 ? `it redirects to ${current}, and ${checked.reason}` : checked.reason,
      );
    attempt++;
    requests++;
    let answer: Answer;
    try {
      answer = await requestOnce(checked.url, checked.matchedEntry, p, signal);
    } catch (error) {
      if (error instanceof OutputError || signal?.aborted) throw error;
      const reason = networkReason(error);
      if (!isRetryableNetworkError(error) || attempt >= p.retry.maxAttempts) {
        throw new OutputUnavailableError(url, attempt > 1 ? `${reason} (after ${attempt} attempts)` : reason, error);
      }
      await wait(url, attempt, backoffDelay(p.retry, attempt), reason, p, signal);
      continue;
    }
    const { request, response } = answer;
    const status = response.statusCode ?? 0;
    const kind = answerKind(status);
    if (kind !== "ok") {
      response.resume();
      request.destroy();
    }
    if (kind === "redirect") {
      const location = response.headers.location;
      if (!location) throw new OutputRejectedError(url, status);
      if (++redirects > p.maxRedirects)
        throw new OutputRefusedError(url, `it redirects more than ${p.maxRedirects} times`);
      current = new URL(location, checked.url).toString();
      continue;
    }
    if (kind === "expired") throw new OutputExpiredError(url, status);
    if (kind === "fail") throw new OutputRejectedError(url, status);
    if (kind === "retry") {
      const retryAfter = parseRetryAfter(headerValue(response.headers["retry-after"]));
      const reason = `it answered ${status}`;
      if (attempt >= p.retry.maxAttempts) throw new OutputUnavailableError(url, `${reason} ${attempt} times`);
      if (retryAfter !== undefined && retryAfter > p.retry.maxDelayMs) {
        throw new OutputUnavailableError(
          url,
          `${reason} and asked to wait ${Math.ceil(retryAfter / 1000)} s (Retry-After), longer than the ${p.retry.maxDelayMs / 1000} s genstore waits`,
        );
      }
      await wait(url, attempt, backoffDelay(p.retry, attempt, { retryAfterMs: retryAfter }), reason, p, signal);
      continue;
    }
    const contentLength = parseLength(response.headers["content-length"]);
    if (contentLength !== null && contentLength > p.maxBytes) {
      response.resume();
      request.destroy();
      throw new OutputTooLargeError(url, p.maxBytes, contentLength);
    }
    return {
      url,
      finalUrl: checked.url.toString(),
      status,
      contentLength,
      contentType: headerValue(response.headers["content-type"]) ?? null,
      body: countedBody(url, request, response, p, signal),
      requests,
    };
  }
}

interface Answer {
  request: http.ClientRequest;
  response: http.IncomingMessage;
}

/** One GET, resolved when the headers arrive. Connects only to an address addressAllowed admits. */
function requestOnce(url: URL, matchedEntry: string, p: Policy, signal?: AbortSignal): Promise<Answer> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (net.isIP(host) !== 0) {
    // node:net skips lookup for IP literals: check the literal itself.
    const check = addressAllowed(host, matchedEntry, p.allowedHosts);
    if (!check.ok) return Promise.reject(new OutputRefusedError(url.toString(), check.reason));
  }
  return new Promise<Answer>((resolve, reject) => {
    const client = url.protocol === "https:" ? https : http;
    const request = client.request(url, {
      method: "GET",
      // identity: Content-Length is then the size we store.
      headers: { accept: "*/*", "accept-encoding": "identity", "user-agent": "genstore" },
      agent: false,
      lookup: checkedLookup(url.toString(), matchedEntry, p),
    });
    const deadline = setTimeout(
      () => request.destroy(new OutputUnavailableTimeout(`no answer within ${p.headersTimeoutMs / 1000} s`)),
      p.headersTimeoutMs,
    );
    const onAbort = () => request.destroy(signal!.reason as Error);
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = () => {
      clearTimeout(deadline);
      signal?.removeEventListener("abort", onAbort);
    };
    request.once("response", (response) => {
      settle();
      resolve({ request, response });
    });
    request.once("error", (error) => {
      settle();
      reject(error);
    });
    request.end();
  });
}

/** A timeout before the headers: retryable like a network error. */
class OutputUnavailableTimeout extends Error {
  readonly code = "ETIMEDOUT";
}

/** Thrown inside lookup: no resolved address may be used. */
class AddressRefused extends OutputRefusedError {}

/**
 * node:http's `lookup`: resolves the name, keeps only the addresses addressAllowed admits and
 * hands those to the socket, so the address checked is the one connected to. Called with
 * `all: true` when the socket tries several addresses (autoSelectFamily).
 */
function checkedLookup(url: string, matchedEntry: string, p: Policy): net.LookupFunction {
  const resolve = p.resolve ?? systemResolver;
  return ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
    resolve(hostname).then(
      (found) => {
        const usable = found.filter(
          (a) => options.family === undefined || options.family === 0 || a.family === options.family,
        );
        const allowed = usable.filter((a) => addressAllowed(a.address, matchedEntry, p.allowedHosts).ok);
        if (allowed.length === 0) {
          const first = usable[0];
          const reason = first
            ? (addressAllowed(first.address, matchedEntry, p.allowedHosts) as { reason: string }).reason
            : `${hostname} did not resolve to any address`;
          callback(new AddressRefused(url, reason));
        } else if (options.all) {
          callback(null, allowed);
        } else {
          callback(null, allowed[0]!.address, allowed[0]!.family);
        }
      },
      (error: unknown) => callback(error),
    );
  }) as net.LookupFunction;
}

/**
 * The response body, counted against maxBytes, with an idle timeout; errors are OutputErrors.
 * The idle timeout counts only time spent waiting for the server: while the reader is slow
 * (an upload part in flight, backpressure), the body is paused on purpose and no timer runs out.
 */
function countedBody(
  url: string,
  request: http.ClientRequest,
  response: http.IncomingMessage,
  p: Policy,
  signal?: AbortSignal,
): Readable {
  let received = 0;
  const idle = setTimeout(function onIdle() {
    if (counter.writableNeedDrain || counter.readableLength >= counter.readableHighWaterMark)
      return void idle.refresh();
    counter.destroy(new OutputUnavailableError(url, `no data for ${p.idleTimeoutMs / 1000} s after ${received} bytes`));
  }, p.idleTimeoutMs);
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      idle.refresh();
      received += chunk.length;
      if (received > p.maxBytes) callback(new OutputTooLargeError(url, p.maxBytes, "more"));
      else callback(null, chunk);
    },
  });
  const onAbort = () => counter.destroy(signal!.reason as Error);
  signal?.addEventListener("abort", onAbort, { once: true });
  pipeline(response, counter, (error) => {
    clearTimeout(idle);
    signal?.removeEventListener("abort", onAbort);
    if (!error) return;
    request.destroy();
    // A premature close of the response (server hung up mid-body) reaches the reader as
    // an OutputError; an error the reader caused (it destroyed the body) needs no report.
    if (!counter.destroyed) counter.destroy(asBodyError(url, error, received));
  });
  counter.once("close", () => clearTimeout(idle));
  response.once("aborted", () =>
    counter.destroy(new OutputUnavailableError(url, `the connection closed after ${received} bytes`)),
  );
  return counter;
}

function asBodyError(url: string, error: unknown, received: number): Error {
  if (error instanceof OutputError) return error;
  return new OutputUnavailableError(
    url,
    `the download broke off after ${received} bytes (${networkReason(error)})`,
    error,
  );
}

async function wait(
  url: string,
  attempt: number,
  delayMs: number,
  reason: string,
  p: Policy,
  signal?: AbortSignal,
): Promise<void> {
  p.onRetry?.({ url, attempt, delayMs, reason });
  await sleep(delayMs, undefined, { signal });
}

function isRetryableNetworkError(error: unknown): boolean {
  const code = (error as { code?: string })?.code;
  return error instanceof OutputUnavailableTimeout || (code !== undefined && RETRYABLE_CODES.has(code));
}

function networkReason(error: unknown): string {
  const e = error as { code?: string; message?: string };
  if (error instanceof OutputUnavailableTimeout) return e.message!;
  return e?.code ?? e?.message?.split("\n")[0] ?? String(error);
}

function parseLength(value: string | undefined): number | null {
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : null;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The media type the download's first bytes show, read without consuming them (they are put
 * back, so the body still streams whole and nothing else is buffered). A body that is no
 * image or video is destroyed and refused with OutputNotMediaError.
 */
export async function sniffDownload(download: Download): Promise<SniffedType> {
  const head = await peek(download.body, SNIFF_BYTES);
  const type = sniffMediaType(head);
  if (type === undefined) {
    download.body.destroy();
    throw new OutputNotMediaError(download.url, describeUnknownBytes(head), download.contentType);
  }
  return type;
}

/** The first bytes of body (fewer when it ends sooner), unshifted back into it. */
async function peek(body: Readable, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < bytes) {
    const chunk = body.read() as Buffer | null;
    if (chunk !== null) {
      chunks.push(chunk);
      size += chunk.length;
      continue;
    }
    if (body.errored) throw body.errored;
    if (body.readableEnded || body.destroyed) break;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        body.off("readable", done);
        body.off("end", done);
        body.off("close", done);
        body.off("error", failed);
        resolve();
      };
      const failed = (error: Error) => {
        done();
        reject(error);
      };
      body.once("readable", done);
      body.once("end", done);
      body.once("close", done);
      body.once("error", failed);
    });
  }
  const head = Buffer.concat(chunks, size);
  if (head.length > 0) body.unshift(head);
  return head.subarray(0, bytes);
}
