import { buffer } from "node:stream/consumers";
import type { Database } from "../../src/db/client.ts";
import { StorageError } from "../../src/errors.ts";
import { runMigrateKeys, type MigrateKeysDeps, type MigrateKeysInput } from "../../src/jobs/migrate-keys.ts";
import type { Storage } from "../../src/storage/types.ts";
import { createTestDatabase, type DatabaseKind } from "./db.ts";
import { testStorage } from "./pipeline-fixtures.ts";
import { generations, insertGeneration, jobCursors, keyMoves } from "./generations.ts";

// A database and a storage (local folder or a fresh bucket on the test S3 server) for
// migrate-keys tests, with helpers to seed legacy objects and rows and to snapshot both.

export type ProviderKind = "local" | "s3";

/** A local folder or a fresh bucket on the test S3 server, closed when the test ends. */
export function makeStorage(provider: ProviderKind): Promise<Storage> {
  return testStorage(provider === "s3" ? "aws" : "local");
}

export interface Row {
  id: string;
  userId: string;
  prompt: string;
  operationType?: string | null;
  storageKeys: unknown[];
  storageProvider?: string | null;
  storageBucket?: string | null;
}

export async function setup(kind: DatabaseKind, provider: ProviderKind) {
  const { db, config } = await createTestDatabase(kind);
  const storage = await makeStorage(provider);
  const copies = new Map<string, number>();
  /** Keys deleteMany reports it could not delete (as S3's DeleteObjects does per key). */
  const refusedDeletes = new Set<string>();
  /** How many keys each deleteMany request carried, in order. */
  const deleteRequests: number[] = [];
  // Counts server-side copies per source key, to check that reruns copy nothing twice.
  const counted: Storage = {
    provider: storage.provider,
    bucket: storage.bucket,
    put: (key, body, options) => storage.put(key, body, options),
    copy: (source, target, options) => {
      copies.set(source, (copies.get(source) ?? 0) + 1);
      return storage.copy(source, target, options);
    },
    head: (key) => storage.head(key),
    get: (key, options) => storage.get(key, options),
    downloadUrl: (key, options) => storage.downloadUrl(key, options),
    delete: (key) => storage.delete(key),
    deleteMany: async (keys) => {
      deleteRequests.push(keys.length);
      const refused = keys.filter((key) => refusedDeletes.has(key));
      const failures = await storage.deleteMany(keys.filter((key) => !refusedDeletes.has(key)));
      return [
        ...failures,
        ...refused.map((key) => ({ key, error: new StorageError(`Cannot delete ${key} (AccessDenied).`) })),
      ];
    },
    list: (prefix, options) => storage.list(prefix, options),
    listPages: (prefix, options) => storage.listPages(prefix, options),
    check: () => storage.check(),
    close: () => storage.close(),
  };
  const run = (input: MigrateKeysInput = {}, extra: Partial<MigrateKeysDeps> = {}) =>
    runMigrateKeys(input, { db, storage: counted, ...extra });
  return { db, config, storage, copies, refusedDeletes, deleteRequests, run };
}

export async function putObjects(storage: Storage, keys: string[]): Promise<void> {
  await Promise.all(keys.map((key) => storage.put(key, Buffer.from(`body of ${key}`))));
}

export async function insertRows(db: Database, rows: Row[]): Promise<void> {
  for (const row of rows) {
    await insertGeneration(db, {
      status: "succeeded",
      operationType: null,
      ...row,
      storageKeys: row.storageKeys,
    });
  }
}

/** Every key in storage with its body. */
export async function bucketContents(storage: Storage): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for await (const object of storage.list())
    result[object.key] = (await buffer(await storage.get(object.key))).toString();
  return result;
}

/** Every row's storageKeys by id, and the journal. */
export async function databaseContents(db: Database) {
  const rows = (await generations(db, { orderBy: "id" })).map(({ id, storageKeys, updatedAt }) => ({
    id,
    storageKeys,
    updatedAt,
  }));
  const journal = await keyMoves(db);
  const cursors = await jobCursors(db);
  return { rows, journal, cursors };
}

export function keysOf(storageKeys: unknown): string[] {
  return (storageKeys as unknown[]).map((entry) =>
    typeof entry === "string" ? entry : (entry as { key: string }).key,
  );
}
