// Building blocks for tests of the ingestion pipeline: predictions, storages of both kinds
// (a temp folder; a fresh bucket on the run's moto_server) and PipelineDeps around them.
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { inject, onTestFinished } from "vitest";
import { parsePrediction, type Prediction } from "../../src/core/prediction.ts";
import type { Database } from "../../src/db/client.ts";
import type { PipelineDeps } from "../../src/pipeline/types.ts";
import { createLocalStorage } from "../../src/storage/local.ts";
import { createS3Client, createS3Storage, type S3StorageConfig } from "../../src/storage/s3.ts";
import type { Storage } from "../../src/storage/types.ts";
import { createTestDatabase, type DatabaseKind, type TestDatabase } from "./db.ts";

export type StorageKind = "local" | "aws";
export const storageKinds: StorageKind[] = ["local", "aws"];

const MiB = 1024 ** 2;

export async function tempDir(prefix = "genstore-pipeline-"): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A local storage in a temp folder, or an S3 storage on a fresh moto bucket; closed when the test ends. */
export async function testStorage(kind: StorageKind): Promise<Storage> {
  const { storage, cleanup } = await createTestStorage(kind);
  onTestFinished(cleanup);
  return storage;
}

/** The same, for a whole file (beforeAll): the caller runs cleanup. */
export async function createTestStorage(
  kind: StorageKind,
): Promise<{ storage: Storage; cleanup: () => Promise<void> }> {
  if (kind === "local") {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "genstore-pipeline-"));
    return {
      storage: createLocalStorage(path.join(dir, "storage")),
      cleanup: () => fs.rm(dir, { recursive: true, force: true }),
    };
  }
  const { storage, cleanup } = await createS3Bucket("genstore-pipeline-");
  return { storage, cleanup };
}

/** A fresh bucket on the run's S3 server: a storage on it and the environment that points a binary at it; closed when the test ends. */
export async function testS3Bucket(
  prefix: string,
): Promise<{ config: S3StorageConfig; storage: Storage; env: Record<string, string> }> {
  const { config, storage, cleanup } = await createS3Bucket(prefix);
  onTestFinished(cleanup);
  const env = {
    GENSTORE_STORAGE: "aws",
    S3_BUCKET: config.bucket,
    AWS_ENDPOINT_URL_S3: config.endpoint!,
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    AWS_REGION: "us-east-1",
  };
  return { config, storage, env };
}

async function createS3Bucket(
  prefix: string,
): Promise<{ config: S3StorageConfig; storage: Storage; cleanup: () => Promise<void> }> {
  const config: S3StorageConfig = {
    provider: "aws",
    bucket: `${prefix}${randomBytes(6).toString("hex")}`,
    region: "us-east-1",
    endpoint: inject("s3Endpoint"),
    forcePathStyle: true,
    checksums: "WHEN_REQUIRED",
  };
  // The test S3 server is one Python process shared by every test file: on a busy machine it
  // can take longer than genstore's own 10 s to accept a connection. That is the harness's
  // slowness, not what these tests check (tests/storage-deadlines.test.ts checks the deadlines).
  const client = createS3Client(
    config,
    { credentials: { accessKeyId: "test", secretAccessKey: "test" } },
    { connectMs: 120_000, firstByteMs: 120_000, idleMs: 120_000 },
  );
  await client.send(new CreateBucketCommand({ Bucket: config.bucket }));
  const storage = createS3Storage(config, client, { partSize: 5 * MiB });
  return { config, storage, cleanup: async () => client.destroy() };
}

/** A prediction as Replicate sends it; `overrides` replace top-level fields. */
export function makePrediction(overrides: Record<string, unknown> = {}): Prediction {
  const parsed = parsePrediction({
    id: `p${randomBytes(8).toString("hex")}`,
    model: "black-forest-labs/flux-schnell",
    version: "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
    input: { prompt: "a red fox in snow" },
    output: null,
    error: null,
    status: "succeeded",
    created_at: "2026-11-20T10:00:00.000Z",
    started_at: "2026-11-20T10:00:01.000Z",
    completed_at: "2026-11-20T10:00:04.000Z",
    metrics: { predict_time: 2.7, total_time: 4 },
    ...overrides,
  });
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.prediction;
}

/** Deps with fast retries (tests should not wait seconds for backoff). */
export function pipelineDeps(
  db: Database,
  storage: Storage,
  outputHosts: string[],
  overrides: Partial<PipelineDeps> = {},
): PipelineDeps {
  return {
    db,
    storage,
    config: { outputHosts, maxOutputBytes: 50 * MiB },
    download: { retry: { baseDelayMs: 10, maxDelayMs: 2_000 } },
    ...overrides,
  };
}

const shared = new Map<DatabaseKind, Promise<Awaited<ReturnType<typeof createTestDatabase>>>>();

/**
 * One database per kind for a whole test file, emptied (TRUNCATE "Generation") at each call:
 * loading a PGlite template for every test costs about a second; this costs milliseconds.
 * The file must call dropSharedDatabases in afterAll.
 */
export async function sharedTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  let entry = shared.get(kind);
  if (!entry) {
    entry = createTestDatabase(kind, { cleanup: "manual" });
    shared.set(kind, entry);
  }
  const database = await entry;
  await database.db.query(`TRUNCATE "Generation"`);
  return database;
}

export async function dropSharedDatabases(): Promise<void> {
  const all = [...shared.values()];
  shared.clear();
  await Promise.all(all.map(async (entry) => (await entry).drop()));
}
