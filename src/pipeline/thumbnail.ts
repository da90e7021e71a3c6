import { pipeline } from "node:stream/promises";
import type { StorageKeyEntry } from "../core/generation-merge.ts";
import { loadSharp } from "../lazy.ts";
import { ObjectExistsError } from "../storage/errors.ts";
import type { Storage } from "../storage/types.ts";

// Thumbnails of image outputs: read back from storage (the stored object, not the download,
// so a thumbnail can be made again later from what genstore holds), 512 px wide at most
// (never enlarged), WebP, EXIF orientation applied. Streamed both ways.

export const THUMBNAIL_WIDTH = 512;
export const THUMBNAIL_CONTENT_TYPE = "image/webp";
/** Larger images get no thumbnail (decoding them would take hundreds of MB). */
export const THUMBNAIL_MAX_INPUT_PIXELS = 120_000_000;

export async function makeThumbnail(
  storage: Storage,
  sourceKey: string,
  thumbnailKey: string,
  signal?: AbortSignal,
): Promise<{ entry: StorageKeyEntry; written: boolean }> {
  const existing = await storage.head(thumbnailKey);
  // A thumbnail is derived data: one already there (a concurrent delivery's) is as good as ours.
  if (existing) return { entry: entryOf(existing), written: false };
  const sharp = await loadSharp();
  const source = await storage.get(sourceKey);
  const transformer = sharp({ limitInputPixels: THUMBNAIL_MAX_INPUT_PIXELS })
    .rotate()
    .resize({ width: THUMBNAIL_WIDTH, withoutEnlargement: true })
    .webp({ quality: 80 });
  const feeding = pipeline(source, transformer).catch((error: unknown) => {
    transformer.destroy(error as Error);
  });
  try {
    const info = await storage.put(thumbnailKey, transformer, {
      contentType: THUMBNAIL_CONTENT_TYPE,
      ifNoneMatch: true,
      signal,
    });
    return { entry: entryOf({ ...info, contentType: THUMBNAIL_CONTENT_TYPE }), written: true };
  } catch (error) {
    if (!(error instanceof ObjectExistsError)) throw error;
    const raced = await storage.head(thumbnailKey);
    if (!raced) throw error;
    return { entry: entryOf(raced), written: false };
  } finally {
    source.destroy();
    await feeding;
  }
}

function entryOf(info: { key: string; size: number; etag: string; contentType?: string }): StorageKeyEntry {
  return {
    key: info.key,
    size: info.size,
    contentType: info.contentType ?? THUMBNAIL_CONTENT_TYPE,
    etag: info.etag,
    kind: "thumbnail",
  };
}
