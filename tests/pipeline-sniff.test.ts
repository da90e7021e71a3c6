import { describe, expect, it, onTestFinished } from "vitest";
import { describeUnknownBytes, sniffMediaType } from "../src/core/media-type.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { OutputNotMediaError } from "../src/pipeline/errors.ts";
import { createTestDatabase } from "./support/db.ts";
import { generation } from "./support/generations.ts";
import { startOutputServer } from "./support/output-server.ts";
import { makePrediction, pipelineDeps, storageKinds, testStorage } from "./support/pipeline-fixtures.ts";

// An output is stored with the type its bytes show, not the one it was served with, and
// bytes that are no image or video are refused with an error on the row.

const hex = (text: string) => Buffer.from(text.replace(/\s/g, ""), "hex");

describe("sniffMediaType", () => {
  it.each([
    ["PNG", hex("89504e470d0a1a0a 0000000d49484452"), "image/png"],
    ["JPEG", hex("ffd8ffe000104a46 49460001"), "image/jpeg"],
    ["GIF89a", Buffer.from("GIF89a\x01\x00\x01\x00"), "image/gif"],
    ["GIF87a", Buffer.from("GIF87a\x01\x00\x01\x00"), "image/gif"],
    ["WebP", Buffer.concat([Buffer.from("RIFF"), hex("24000000"), Buffer.from("WEBPVP8 ")]), "image/webp"],
    ["MP4 (isom)", hex("00000018 66747970 69736f6d 00000200"), "video/mp4"],
    ["MP4 (mp42)", hex("00000020 66747970 6d703432 00000000"), "video/mp4"],
    ["QuickTime", Buffer.concat([hex("00000014 66747970"), Buffer.from("qt  "), hex("00000000")]), "video/quicktime"],
    ["AVIF", Buffer.concat([hex("0000001c 66747970"), Buffer.from("avif"), hex("00000000")]), "image/avif"],
    ["WebM", hex("1a45dfa3 9f4286810142f781"), "video/webm"],
  ])("%s", (_, bytes, contentType) => {
    expect(sniffMediaType(bytes)?.contentType).toBe(contentType);
  });

  it.each([
    ["HTML", Buffer.from("<!DOCTYPE html><html>"), /text starting "<!DOCTYPE html><"/],
    ["JSON", Buffer.from('{"detail":"not found"}'), /text starting/],
    [
      "a RIFF that is not WebP (WAV)",
      Buffer.concat([Buffer.from("RIFF"), hex("24000000"), Buffer.from("WAVEfmt ")]),
      /bytes starting 52 49 46 46/,
    ],
    ["a truncated PNG signature", hex("89504e47"), /bytes starting 89 50 4e 47/],
    ["nothing", Buffer.alloc(0), /an empty body/],
  ])("refuses %s", (_, bytes, description) => {
    expect(sniffMediaType(bytes)).toBeUndefined();
    expect(describeUnknownBytes(bytes)).toMatch(description);
  });
});

describe.each(storageKinds)("ingestPrediction sniffs every output (%s storage)", (storageKind) => {
  async function setup() {
    const [{ db }, storage, server] = await Promise.all([
      createTestDatabase("embedded"),
      testStorage(storageKind),
      startOutputServer(),
    ]);
    onTestFinished(() => server.close());
    return { db, storage, server, deps: pipelineDeps(db, storage, [server.hostEntry]) };
  }

  it("refuses HTML served as image/png with an error on the row, and stores nothing", async () => {
    const { db, storage, server, deps } = await setup();
    server.route("/html/out-0.png", (_req, res) => {
      res.writeHead(200, { "content-type": "image/png" });
      res.end("<!DOCTYPE html><html><body>Access denied</body></html>");
    });
    const prediction = makePrediction({ output: [server.url("/html/out-0.png")] });
    const error = await ingestPrediction(deps, { prediction, via: "webhook", query: { userId: "alice" } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OutputNotMediaError);
    expect((error as OutputNotMediaError).retryable).toBe(false);
    expect((error as Error).message).toMatch(
      /is not an image or a video: text starting "<!DOCTYPE html><", served as image\/png; nothing was stored/,
    );
    const keys: string[] = [];
    for await (const info of storage.list("")) keys.push(info.key);
    expect(keys).toEqual([]);
    const row = await generation(db, { replicateId: prediction.id });
    expect(row.error).toMatch(/not an image or a video/);
    expect(row.storageKeys).toEqual([]);
  });

  it("stores JPEG bytes served as image/png (at a .png URL) with the type the bytes show", async () => {
    const { db, server, deps } = await setup();
    server.route("/mislabelled/out-0.png", (_req, res) => {
      res.writeHead(200, { "content-type": "image/png", "content-length": server.bytes.jpeg.length });
      res.end(server.bytes.jpeg);
    });
    const prediction = makePrediction({ output: [server.url("/mislabelled/out-0.png")] });
    const result = await ingestPrediction(deps, { prediction, via: "webhook", query: { userId: "alice" } });
    expect(result.stored.find((s) => s.kind === "output")).toMatchObject({ contentType: "image/jpeg" });
    const row = await generation(db, { replicateId: prediction.id });
    expect(row.storageKeys).toContainEqual(expect.objectContaining({ kind: "output", contentType: "image/jpeg" }));
  });

  it("sniffs a body that arrives a few bytes at a time, and stores it whole", async () => {
    const { storage, server, deps } = await setup();
    server.route("/trickle/out-0.png", (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const png = server.bytes.png;
      let at = 0;
      const next = () => {
        if (at >= png.length) return void res.end();
        const size = at < 24 ? 3 : 64 * 1024;
        res.write(png.subarray(at, at + size));
        at += size;
        setTimeout(next, at < 24 ? 5 : 0);
      };
      next();
    });
    const prediction = makePrediction({ output: [server.url("/trickle/out-0.png")] });
    const result = await ingestPrediction(deps, { prediction, via: "webhook", query: { userId: "alice" } });
    const output = result.stored.find((s) => s.kind === "output")!;
    expect(output).toMatchObject({ contentType: "image/png", size: server.bytes.png.length });
    const stored = Buffer.concat(await (await storage.get(output.key)).toArray());
    expect(stored.equals(server.bytes.png)).toBe(true);
  });
});
