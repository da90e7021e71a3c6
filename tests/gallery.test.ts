import http from "node:http";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { createGalleryServer, type GalleryServer } from "../src/gallery/server.ts";
import type { Storage } from "../src/storage/types.ts";
import { createTestDatabase, databaseKinds, type DatabaseKind } from "./support/db.ts";
import { EXPECTED_TABS, XSS_PROMPT, seedGallery, type SeededGallery } from "./support/gallery-fixtures.ts";
import { insertGenerations } from "./support/generations.ts";
import { createTestStorage, storageKinds, type StorageKind } from "./support/pipeline-fixtures.ts";

// The gallery's server over real HTTP on loopback: its API, its media (streamed from local
// storage, presigned on S3), and its safety rules. The page itself is tested in a browser
// (gallery-browser.test.ts).

const VIDEO = Buffer.alloc(50_000, 7);

/** A raw request: the path is sent exactly as given (fetch would resolve ../ first). */
function request(
  base: string,
  rawPath: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: rawPath, method: options.method ?? "GET", headers: options.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const json = async (base: string, path: string) => {
  const res = await request(base, path);
  return { status: res.status, body: JSON.parse(res.body.toString()) };
};

const combos = databaseKinds.flatMap((db) => storageKinds.map((storage) => ({ db, storage })));

describe.each(combos)("gallery server on $db with $storage storage", ({ db: dbKind, storage: storageKind }) => {
  let base: string;
  let gallery: GalleryServer;
  let seeded: SeededGallery;
  let storage: Storage;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    ({ base, gallery, seeded, storage, drop } = await start(dbKind, storageKind));
  });
  afterAll(async () => {
    await gallery.close();
    await drop();
  });

  it.each(Object.entries(EXPECTED_TABS))(
    "lists the %s tab by the hybrid rule, newest first, with counts per tab",
    async (tab, ids) => {
      const { body } = await json(base, `/api/generations?tab=${tab}`);
      expect(body.items.map((item: { id: string }) => item.id)).toEqual(ids.slice(0, 4));
      expect(body.next).toBe(ids.length > 4 ? ids[3] : null);
      const counts = await json(base, "/api/counts");
      expect(counts.body[tab]).toBe(ids.length);
    },
  );

  it("pages with the last id, and filters by user, status and dates", async () => {
    const first = await json(base, "/api/generations");
    const second = await json(base, `/api/generations?after=${first.body.next}`);
    const third = await json(base, `/api/generations?after=${second.body.next}`);
    expect([...first.body.items, ...second.body.items, ...third.body.items].map((i: { id: string }) => i.id)).toEqual(
      EXPECTED_TABS.all,
    );
    expect(third.body.next).toBeNull();

    const alice = await json(base, "/api/generations?user=alice");
    expect(alice.body.items.map((i: { id: string }) => i.id)).toEqual(["edit-prompt", "gen-col"]);
    const failed = await json(base, "/api/generations?status=failed");
    expect(failed.body.items.map((i: { id: string }) => i.id)).toEqual(["failed"]);
    // Rows are a minute apart from 10:00: 10:02 to 10:04 (until is exclusive for a time).
    const range = await json(base, "/api/generations?since=2026-11-20T10:02:00Z&until=2026-11-20T10:05:00Z");
    expect(range.body.items.map((i: { id: string }) => i.id)).toEqual(["failed", "video-col", "upscale-col-wins"]);
    // A bare date as the end means that whole day.
    const day = await json(base, "/api/counts?since=2026-11-20&until=2026-11-20&user=carol");
    expect(day.body).toMatchObject({ all: 2, generated: 1, edited: 0, upscaled: 1, videos: 0 });
    expect((await json(base, "/api/counts?until=2026-11-19")).body.all).toBe(0);
  });

  it("refuses bad filters and an unknown cursor with 400 and a message", async () => {
    expect(await json(base, "/api/generations?status=nope")).toMatchObject({
      status: 400,
      body: { error: 'unknown status "nope"' },
    });
    expect((await json(base, "/api/generations?tab=photos")).status).toBe(400);
    expect((await json(base, "/api/counts?since=yesterday")).status).toBe(400);
    expect(await json(base, "/api/generations?after=nope")).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/Unknown cursor/) },
    });
  });

  it("says what is wrong with each row: failed, processing, expired, missing in storage, no thumbnail", async () => {
    const { body } = await json(base, "/api/generations?tab=all&user=dave");
    const byId = new Map(body.items.map((item: { id: string }) => [item.id, item]));
    expect(byId.get("missing")).toMatchObject({
      flags: { missingKeys: true, failed: false },
      cover: null,
      objects: [{ key: seeded.keys.missing, missing: true }],
    });
    expect(byId.get("expired")).toMatchObject({
      flags: { expired: true, noOutput: true },
      expiredOutputs: [{ index: 0, problem: "expired" }],
    });
    const carol = await json(base, "/api/generations?user=carol");
    const [processing, failed] = carol.body.items;
    expect(processing).toMatchObject({ id: "processing", flags: { processing: true } });
    expect(failed).toMatchObject({ id: "failed", flags: { failed: true }, error: expect.stringMatching(/NSFW/) });
    const bob = await json(base, "/api/generations?user=bob");
    expect(bob.body.items.find((i: { id: string }) => i.id === "upscale-col-wins")).toMatchObject({
      flags: { noThumbnail: true, missingKeys: false },
      operation: { operationType: "upscale", detectedBy: "operationType-column" },
    });
    expect(bob.body.items.find((i: { id: string }) => i.id === "video-col")).toMatchObject({
      flags: { noThumbnail: false },
      cover: { media: "video" },
    });
  });

  it("gives one generation's detail with every field the page shows", async () => {
    const { status, body } = await json(base, "/api/generations/edit-prompt");
    expect(status).toBe(200);
    expect(body).toMatchObject({
      id: "edit-prompt",
      prompt: "[EDITED] the same fox, now blue",
      operation: { operationType: "edit", storageContext: "edited", detectedBy: "prompt-prefix" },
      status: "succeeded",
      replicateId: expect.stringMatching(/^p1/),
      model: "black-forest-labs/flux-schnell",
      version: expect.stringMatching(/^5599ed/),
      userIdSource: "prediction-input",
      storageProvider: storage.provider,
      metadata: { note: "row edit-prompt" },
      createdAt: "2026-11-20T10:01:00.000Z",
      completedAt: "2026-11-20T10:01:04.000Z",
    });
    expect(body.objects.map((o: { kind: string; size: number }) => [o.kind, o.size])).toEqual([
      ["output", seeded.objects.get("edited/alice/edit-prompt_0.png")!.byteLength],
      ["thumbnail", seeded.objects.get("thumbnails/edited/alice/edit-prompt_0.webp")!.byteLength],
    ]);
    expect((await json(base, "/api/generations/nope")).status).toBe(404);
  });

  it("keeps user text as data: the XSS prompt comes back as the same string", async () => {
    const { body } = await json(base, "/api/generations/xss");
    expect(body.prompt).toBe(XSS_PROMPT);
  });

  it("serves an object a row lists, with its bytes", async () => {
    const res = await followMedia(base, `/media/gen-col/${seeded.keys.genOutput}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual(seeded.objects.get(seeded.keys.genOutput));
    expect(res.headers["content-type"]).toBe("image/png");
  });

  it.each([
    ["../ in the path", "/media/gen-col/../../../../etc/passwd"],
    ["encoded ../", "/media/gen-col/%2e%2e/%2e%2e/%2e%2e/etc/passwd"],
    ["an encoded slash", "/media/gen-col/generated%2f..%2f..%2fetc%2fpasswd"],
    ["a backslash", "/media/gen-col/..%5c..%5cetc%5cpasswd"],
    ["an absolute path", "/media/gen-col//etc/passwd"],
    ["a dot file", "/media/gen-col/generated/alice/.gen-col_0.png.meta.json"],
    ["double encoding", "/media/gen-col/%252e%252e/%252e%252e/etc/passwd"],
    ["a NUL", "/media/gen-col/generated/alice/gen-col_0.png%00"],
  ])("answers 404 to a traversal: %s", async (_name, rawPath) => {
    const res = await request(base, rawPath);
    expect(res.status).toBe(404);
    expect(res.body.toString()).not.toMatch(/root:/);
  });

  it("serves a key only through a row that lists it", async () => {
    // In storage, but no row lists it.
    expect((await request(base, `/media/gen-col/${seeded.keys.unreferenced}`)).status).toBe(404);
    // Listed by another row.
    expect((await request(base, `/media/xss/${seeded.keys.genOutput}`)).status).toBe(404);
    expect((await request(base, `/media/nope/${seeded.keys.genOutput}`)).status).toBe(404);
    // Listed, but gone from storage.
    expect((await followMedia(base, `/media/missing/${seeded.keys.missing}`)).status).toBe(404);
  });

  it("has no endpoint that writes", async () => {
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      for (const path of [
        "/",
        "/api/generations",
        "/api/generations/gen-col",
        `/media/gen-col/${seeded.keys.genOutput}`,
      ]) {
        const res = await request(base, path, { method });
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.allow).toBe("GET, HEAD");
      }
    }
    expect(seeded.objects.size).toBeGreaterThan(0);
    expect(await storage.head(seeded.keys.genOutput)).toBeDefined();
  });

  if (storageKind === "local") {
    it("streams local objects with ETag, Cache-Control and ranges", async () => {
      const path = `/media/video-col/${seeded.keys.video}`;
      const whole = await request(base, path);
      expect(whole.status).toBe(200);
      expect(whole.headers).toMatchObject({
        "content-type": "video/webm",
        "accept-ranges": "bytes",
        "cache-control": "private, no-cache",
        "content-length": String(VIDEO.byteLength),
      });
      const etag = whole.headers.etag!;
      expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
      expect((await request(base, path, { headers: { "if-none-match": etag } })).status).toBe(304);

      const part = await request(base, path, { headers: { range: "bytes=100-199" } });
      expect(part.status).toBe(206);
      expect(part.headers["content-range"]).toBe(`bytes 100-199/${VIDEO.byteLength}`);
      expect(part.body).toEqual(VIDEO.subarray(100, 200));
      const tail = await request(base, path, { headers: { range: "bytes=-10" } });
      expect(tail.body).toEqual(VIDEO.subarray(-10));
      const open = await request(base, path, { headers: { range: "bytes=49990-" } });
      expect(open.headers["content-range"]).toBe(`bytes 49990-49999/${VIDEO.byteLength}`);
      const outside = await request(base, path, { headers: { range: "bytes=60000-" } });
      expect(outside.status).toBe(416);
      expect(outside.headers["content-range"]).toBe(`bytes */${VIDEO.byteLength}`);
      // A range for another version of the object gets the whole current one.
      const stale = await request(base, path, { headers: { range: "bytes=0-9", "if-range": '"old"' } });
      expect(stale.status).toBe(200);
      const head = await request(base, path, { method: "HEAD", headers: { range: "bytes=0-9" } });
      expect([head.status, head.headers["content-length"], head.body.byteLength]).toEqual([206, "10", 0]);
    });
  } else {
    it("answers S3 objects with a short-lived presigned URL the page may load", async () => {
      const res = await request(base, `/media/video-col/${seeded.keys.video}`);
      expect(res.status).toBe(302);
      const location = new URL(res.headers.location!);
      expect(location.searchParams.get("X-Amz-Expires")).toBe("900");
      expect(res.headers["cache-control"]).toBe("private, max-age=300");
      const page = await request(base, "/");
      expect(page.headers["content-security-policy"]).toContain(`media-src 'self' ${location.origin}`);
      const part = await fetch(location, { headers: { range: "bytes=100-199" } });
      expect(part.status).toBe(206);
      expect(Buffer.from(await part.arrayBuffer())).toEqual(VIDEO.subarray(100, 200));
    });
  }
});

describe("gallery server safety", () => {
  let base: string;
  let gallery: GalleryServer;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    ({ base, gallery, drop } = await start("embedded", "local"));
  });
  afterAll(async () => {
    await gallery.close();
    await drop();
  });

  it("sends a strict Content-Security-Policy and nosniff on every answer", async () => {
    for (const path of [
      "/",
      "/static/app.js",
      "/api/counts",
      "/nope",
      "/media/gen-col/generated/alice/gen-col_0.png",
    ]) {
      const res = await request(base, path);
      expect(res.headers["x-content-type-options"], path).toBe("nosniff");
      const csp = res.headers["content-security-policy"];
      expect(csp, path).toMatch(/default-src 'none'/);
      expect(csp, path).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    }
    const page = await request(base, "/");
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(page.headers["referrer-policy"]).toBe("no-referrer");
    // Nothing the page needs comes from elsewhere.
    expect(page.body.toString()).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it("answers only to its own host name (a rebound DNS name gets 403)", async () => {
    const port = new URL(base).port;
    expect((await request(base, "/", { headers: { host: `evil.example:${port}` } })).status).toBe(403);
    expect((await request(base, "/", { headers: { host: `localhost:${port}` } })).status).toBe(200);
  });
});

describe("gallery server with a token", () => {
  const token = "a-token-of-enough-length";
  let base: string;
  let gallery: GalleryServer;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    ({ base, gallery, drop } = await start("embedded", "local", { token }));
  });
  afterAll(async () => {
    await gallery.close();
    await drop();
  });

  it("refuses every request without the token", async () => {
    for (const path of ["/", "/static/app.js", "/api/counts", "/media/gen-col/generated/alice/gen-col_0.png"])
      expect((await request(base, path)).status, path).toBe(401);
    expect((await request(base, "/?token=wrong-token-of-enough-length")).status).toBe(401);
    expect((await request(base, "/api/counts", { headers: { cookie: "genstore_gallery_token=wrong" } })).status).toBe(
      401,
    );
  });

  it("trades ?token= for a cookie, and takes a bearer token", async () => {
    const signIn = await request(base, `/?tab=edited&token=${token}`);
    expect(signIn.status).toBe(303);
    expect(signIn.headers.location).toBe("/?tab=edited");
    const cookie = signIn.headers["set-cookie"]![0]!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const withCookie = await request(base, "/api/counts", { headers: { cookie: cookie.split(";")[0]! } });
    expect(withCookie.status).toBe(200);
    const withBearer = await request(base, "/api/counts", { headers: { authorization: `Bearer ${token}` } });
    expect(JSON.parse(withBearer.body.toString())).toMatchObject({ all: 9 });
    // Any Host: a token guards a server that listens beyond loopback.
    expect(
      (await request(base, "/api/counts", { headers: { authorization: `Bearer ${token}`, host: "gallery.lan" } }))
        .status,
    ).toBe(200);
  });
});

// Counting every row takes a second or more at a million rows: counts are kept per filter
// set for countsMaxAgeMs and say when they were counted; older ones are answered at once
// while a new count runs.
describe("gallery counts", () => {
  const extra = (id: string) => ({
    id,
    userId: "late-user",
    prompt: "[EDITED] one more",
    status: "succeeded",
    createdAt: new Date("2026-11-21T09:00:00Z"),
  });

  it("answers kept counts until they are countsMaxAgeMs old, then counts again in the background", async () => {
    const { base, gallery, seeded, drop, db } = await start("embedded", "local", { countsMaxAgeMs: 60_000 });
    onTestFinished(drop);
    onTestFinished(() => gallery.close());
    expect(seeded.objects.size).toBeGreaterThan(0);
    const first = await json(base, "/api/counts");
    expect(first.body).toMatchObject({ all: EXPECTED_TABS.all.length, edited: 1, ageSeconds: 0 });
    const countedAt = Date.parse(first.body.asOf);
    expect(Math.abs(Date.now() - countedAt)).toBeLessThan(60_000);

    await insertGenerations(db, [extra("late-1")]);
    // Kept: the same counts, counted at the same time; the page itself is live.
    expect((await json(base, "/api/counts")).body).toMatchObject({
      all: EXPECTED_TABS.all.length,
      asOf: first.body.asOf,
    });
    expect((await json(base, "/api/generations")).body.items[0].id).toBe("late-1");
    // Other filters are counted on their own.
    expect((await json(base, "/api/counts?user=late-user")).body).toMatchObject({ all: 1, edited: 1 });
  });

  it("with countsMaxAgeMs 0 counts at every ask", async () => {
    const { base, gallery, drop, db } = await start("embedded", "local", { countsMaxAgeMs: 0 });
    onTestFinished(drop);
    onTestFinished(() => gallery.close());
    expect((await json(base, "/api/counts")).body.all).toBe(EXPECTED_TABS.all.length);
    await insertGenerations(db, [extra("late-1")]);
    expect((await json(base, "/api/counts")).body).toMatchObject({ all: EXPECTED_TABS.all.length + 1, edited: 2 });
  });

  it("answers counts older than countsMaxAgeMs at once, and the new ones once counted", async () => {
    const { base, gallery, drop, db } = await start("embedded", "local", { countsMaxAgeMs: 1 });
    onTestFinished(drop);
    onTestFinished(() => gallery.close());
    const first = await json(base, "/api/counts");
    await insertGenerations(db, [extra("late-1")]);
    const res = await request(base, "/api/counts");
    // The first ask after the change may still get the old counts (marked stale), never a wrong total.
    expect([first.body.all, first.body.all + 1]).toContain(JSON.parse(res.body.toString()).all);
    await expect
      .poll(async () => (await json(base, "/api/counts")).body.all, { timeout: 60_000 })
      .toBe(EXPECTED_TABS.all.length + 1);
    expect(String(res.headers["server-timing"])).toMatch(/cache;desc=(stale|loaded|hit)/);
  });
});

async function start(
  dbKind: DatabaseKind,
  storageKind: StorageKind,
  options: { token?: string; countsMaxAgeMs?: number } = {},
) {
  const database = await createTestDatabase(dbKind, { cleanup: "manual" });
  const { storage, cleanup } = await createTestStorage(storageKind);
  const seeded = await seedGallery(database.db, storage, VIDEO);
  const gallery = await createGalleryServer({ db: database.db, storage, pageSize: 4, ...options });
  const base = await gallery.listen(0, "127.0.0.1");
  const drop = async () => {
    await database.drop();
    await cleanup();
  };
  return { base, gallery, seeded, storage, drop, db: database.db };
}

/** GETs a media path, following the S3 redirect to the presigned URL. */
async function followMedia(base: string, path: string) {
  const res = await request(base, path);
  if (res.status !== 302) return res;
  const target = await fetch(res.headers.location!);
  return {
    status: target.status,
    headers: Object.fromEntries(target.headers) as http.IncomingHttpHeaders,
    body: Buffer.from(await target.arrayBuffer()),
  };
}
