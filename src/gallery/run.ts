import { randomBytes } from "node:crypto";
import { isLoopbackHost } from "../core/loopback.ts";
import type { Database } from "../db/client.ts";
import type { Storage } from "../storage/types.ts";
import { createGalleryServer } from "./server.ts";

// `gallery` as a job: start the read-only server, say where it is, wait for Ctrl-C, stop.

export interface GalleryInput {
  port: number;
  host: string;
  /** Required by every request; generated when host is not a loopback address and none is given. */
  token?: string;
  pageSize?: number;
  /** How old the counts per tab may be (ms); see createGalleryServer. */
  countsMaxAgeMs?: number;
}

export interface GalleryDeps {
  db: Database;
  storage: Storage;
  signal: AbortSignal;
  /** The URL to open (with the token, when there is one, which the page trades for a cookie). */
  onListening: (listening: { url: string; tokenGenerated: boolean }) => void;
  log?: (line: string) => void;
}

export async function runGallery(input: GalleryInput, deps: GalleryDeps): Promise<void> {
  const generate = input.token === undefined && !isLoopbackHost(input.host);
  const token = generate ? randomBytes(24).toString("base64url") : input.token;
  const gallery = await createGalleryServer({
    db: deps.db,
    storage: deps.storage,
    token,
    pageSize: input.pageSize,
    countsMaxAgeMs: input.countsMaxAgeMs,
    log: deps.log,
  });
  const base = await gallery.listen(input.port, input.host);
  try {
    deps.onListening({
      url: token === undefined ? `${base}/` : `${base}/?token=${encodeURIComponent(token)}`,
      tokenGenerated: generate,
    });
    if (!deps.signal.aborted)
      await new Promise<void>((resolve) => deps.signal.addEventListener("abort", () => resolve(), { once: true }));
  } finally {
    await gallery.close();
  }
}
