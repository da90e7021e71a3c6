import type { ObjectFingerprint } from "../core/key-moves.ts";
import type { Storage } from "../storage/types.ts";

// Before copying, migrate-keys must know whether each target already exists (a different
// object there is never overwritten). A HEAD per object is one more request per object on
// top of the copy and the delete; the targets of one listing page mostly share a few
// folders (<context>/<userId>/), so listing those folders answers for a whole page in a
// request per 1,000 keys, the way rclone's checkers list the destination. A folder too
// large for that (more listing than HEADs would cost) is left to HEADs.

/**
 * For each target: its fingerprint if it exists, null if it surely does not; targets left
 * out are unknown (the caller HEADs them).
 */
export async function findExistingTargets(
  storage: Storage,
  targets: string[],
  limit: <T>(work: () => Promise<T>) => Promise<T>,
  pageSize = 1000,
): Promise<Map<string, ObjectFingerprint | null>> {
  const byFolder = new Map<string, string[]>();
  for (const key of targets) {
    const folder = key.slice(0, key.lastIndexOf("/") + 1);
    byFolder.set(folder, [...(byFolder.get(folder) ?? []), key]);
  }
  const known = new Map<string, ObjectFingerprint | null>();
  await Promise.all(
    [...byFolder].map(([folder, keys]) =>
      limit(async () => {
        keys.sort(compareKeys);
        const wanted = new Set(keys);
        const first = keys[0]!;
        const last = keys.at(-1)!;
        // Listing more than half a page per target would cost more than HEADs.
        const budget = Math.max(1, Math.floor(keys.length / 2)) * pageSize;
        const found = new Map<string, ObjectFingerprint>();
        let complete = false;
        let seen = 0;
        // StartAfter is exclusive: a key just before the first target (its own prefix sorts first).
        for await (const object of storage.list(folder, { pageSize, startAfter: first.slice(0, -1) })) {
          if (compareKeys(object.key, last) > 0) {
            complete = true;
            break;
          }
          if (wanted.has(object.key)) found.set(object.key, { size: object.size, etag: object.etag });
          if (++seen >= budget) break;
        }
        if (seen < budget) complete = true; // the listing ended (or passed the last target)
        for (const key of keys) {
          const fingerprint = found.get(key);
          if (fingerprint !== undefined) known.set(key, fingerprint);
          else if (complete) known.set(key, null);
        }
      }),
    ),
  );
  return known;
}

/** S3's key order: UTF-8 bytes (JavaScript's < compares UTF-16 units, which differs above U+FFFF). */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
