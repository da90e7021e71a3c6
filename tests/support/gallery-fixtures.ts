// The gallery's test data: one row for each thing the page must show clearly (a row with
// and one without operationType, the column winning over the prompt, a video, a failed, a
// processing, an expired and a missing-in-storage row, an XSS prompt), and their objects.
import { createHash } from "node:crypto";
import sharp from "sharp";
import type { Database } from "../../src/db/client.ts";
import type { Storage } from "../../src/storage/types.ts";
import { insertGenerations } from "./generations.ts";

export const BASE_TIME = Date.parse("2026-11-20T10:00:00Z");
export const XSS_PROMPT = "<img src=x onerror=alert(1)>";

/** Which rows each tab shows, newest first (createdAt grows with the row's position below). */
export const EXPECTED_TABS = {
  all: ["xss", "missing", "expired", "processing", "failed", "video-col", "upscale-col-wins", "edit-prompt", "gen-col"],
  generated: ["xss", "missing", "expired", "failed", "gen-col"],
  edited: ["edit-prompt"],
  upscaled: ["processing", "upscale-col-wins"],
  videos: ["video-col"],
} as const;

export interface SeededGallery {
  /** Bytes of each stored object, by key. */
  objects: Map<string, Buffer>;
  keys: {
    genOutput: string;
    genThumbnail: string;
    video: string;
    missing: string;
    /** An object in storage that no row lists. */
    unreferenced: string;
  };
}

/** A PNG of width × height in one colour with a stripe, so screenshots show something. */
export async function makePng(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  const stripe = await sharp({
    create: { width, height: Math.max(1, Math.round(height / 5)), channels: 3, background: { r: 250, g: 250, b: 250 } },
  })
    .png()
    .toBuffer();
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .composite([{ input: stripe, top: Math.round(height / 2), left: 0 }])
    .png()
    .toBuffer();
}

export async function seedGallery(db: Database, storage: Storage, video: Buffer): Promise<SeededGallery> {
  const objects = new Map<string, Buffer>();
  const entry = async (key: string, bytes: Buffer, kind: "output" | "thumbnail", contentType: string) => {
    await storage.put(key, bytes, { contentType });
    objects.set(key, bytes);
    return { key, size: bytes.byteLength, contentType, etag: createHash("md5").update(bytes).digest("hex"), kind };
  };
  const image = async (context: string, user: string, id: string, rgb: [number, number, number], thumb = true) => {
    const png = await makePng(640, 480, rgb);
    const entries = [await entry(`${context}/${user}/${id}_0.png`, png, "output", "image/png")];
    if (thumb) {
      const webp = await sharp(png).resize({ width: 256 }).webp().toBuffer();
      entries.push(await entry(`thumbnails/${context}/${user}/${id}_0.webp`, webp, "thumbnail", "image/webp"));
    }
    return entries;
  };
  const facts = (id: string) => ({
    model: "black-forest-labs/flux-schnell",
    version: "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
    metrics: { predict_time: 2.7 },
    arrivedVia: "webhook",
    userIdSource: "webhook-query",
    replicate: { status: "succeeded", createdAt: "2026-11-20T10:00:00.000Z" },
    note: `row ${id}`,
  });

  const rows = [
    {
      id: "gen-col",
      userId: "alice",
      prompt: "a red fox in fresh snow",
      operationType: "generation",
      storageContext: "generated",
      storageKeys: await image("generated", "alice", "gen-col", [200, 70, 40]),
      metadata: { ...facts("gen-col"), detectedBy: "operationType-column" },
    },
    {
      id: "edit-prompt",
      userId: "alice",
      prompt: "[EDITED] the same fox, now blue",
      storageKeys: await image("edited", "alice", "edit-prompt", [40, 90, 200]),
      metadata: { ...facts("edit-prompt"), userIdSource: "prediction-input" },
    },
    {
      id: "upscale-col-wins",
      userId: "bob",
      prompt: "[EDITED] a prompt that says edited, a column that says upscale",
      operationType: "upscale",
      storageContext: "upscaled",
      storageKeys: await image("upscaled", "bob", "upscale-col-wins", [60, 160, 90], false),
      metadata: facts("upscale-col-wins"),
    },
    {
      id: "video-col",
      userId: "bob",
      prompt: "[VIDEO] a fox running through the forest",
      operationType: "video",
      storageContext: "videos",
      storageKeys: [await entry("videos/bob/video-col.webm", video, "output", "video/webm")],
      metadata: facts("video-col"),
    },
    {
      id: "failed",
      userId: "carol",
      prompt: "a prompt the model refused",
      status: "failed",
      operationType: "generation",
      storageContext: "generated",
      error: "NSFW content detected. Try running it again, or try a different prompt.",
      metadata: { ...facts("failed"), replicate: { status: "failed" } },
    },
    {
      id: "processing",
      userId: "carol",
      prompt: "[UPSCALED] still on its way",
      status: "processing",
      metadata: {},
    },
    {
      id: "expired",
      userId: "dave",
      prompt: "an output that expired before genstore saw it",
      operationType: "generation",
      storageContext: "generated",
      error: "output 0 expired before it was stored (the file is gone)",
      metadata: {
        ...facts("expired"),
        expiredOutputs: [
          {
            index: 0,
            url: "https://replicate.delivery/xezq/abc/out-0.webp",
            problem: "expired",
            message: "HTTP 404 from replicate.delivery",
          },
        ],
      },
    },
    {
      id: "missing",
      userId: "dave",
      prompt: "a row whose object was deleted from storage",
      operationType: "generation",
      storageContext: "generated",
      storageKeys: [
        {
          key: "generated/dave/missing_0.png",
          size: 1234,
          contentType: "image/png",
          etag: "0".repeat(32),
          kind: "output",
        },
      ],
      metadata: facts("missing"),
    },
    {
      id: "xss",
      userId: "eve",
      prompt: XSS_PROMPT,
      storageKeys: await image("generated", "eve", "xss", [120, 60, 150]),
      metadata: { ...facts("xss"), note: "<script>alert(2)</script>" },
    },
  ];
  await storage.put("generated/alice/nobody_0.png", Buffer.from("not listed by any row"));
  await insertGenerations(
    db,
    rows.map((row, i) => ({
      status: "succeeded",
      replicateId: `p${i}${row.id.replace(/[^a-z]/g, "")}`,
      storageProvider: "storageKeys" in row ? storage.provider : null,
      storageBucket: "storageKeys" in row ? storage.bucket : null,
      completedAt: row.status === "processing" ? null : new Date(BASE_TIME + i * 60_000 + 4_000),
      ...row,
      createdAt: new Date(BASE_TIME + i * 60_000),
    })),
  );
  return {
    objects,
    keys: {
      genOutput: "generated/alice/gen-col_0.png",
      genThumbnail: "thumbnails/generated/alice/gen-col_0.webp",
      video: "videos/bob/video-col.webm",
      missing: "generated/dave/missing_0.png",
      unreferenced: "generated/alice/nobody_0.png",
    },
  };
}
