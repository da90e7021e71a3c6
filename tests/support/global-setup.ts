import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { startMotoServer, type MotoServer } from "./moto.ts";

// Starts one S3-compatible server (moto_server, see ../shared/NOTES-s3.md) on loopback for
// the whole run; each test file uses buckets of its own.

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
    /** A migrated PGlite data folder as a tarball (see tests/support/db.ts). */
    pgliteTemplate: string;
  }
}

let moto: MotoServer | undefined;
let tempDir: string | undefined;

export async function setup(project: TestProject) {
  tempDir = await mkdtemp(path.join(os.tmpdir(), "genstore-tests-"));
  const [template] = await Promise.all([makePgliteTemplate(tempDir), startMoto(project), buildCli()]);
  project.provide("pgliteTemplate", template);
}

/** Rebuilds dist/ so tests that spawn bin/genstore run the current sources, not an old bundle. */
function buildCli(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(import.meta.dirname, "../../scripts/build.mjs")], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`scripts/build.mjs failed (${code}):\n${stderr}`)),
    );
  });
}

async function makePgliteTemplate(dir: string): Promise<string> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { databaseFromPGlite } = await import("../../src/db/client.ts");
  const { applyMigrations } = await import("../../src/db/migrations.ts");
  const pglite = await PGlite.create();
  const db = await databaseFromPGlite(pglite, "the template database");
  await applyMigrations(db);
  const file = path.join(dir, "pglite-template.tar");
  await writeFile(file, Buffer.from(await (await pglite.dumpDataDir("none")).arrayBuffer()));
  await db.close();
  return file;
}

async function startMoto(project: TestProject) {
  moto = await startMotoServer();
  project.provide("s3Endpoint", moto.endpoint);
}

export async function teardown() {
  moto?.stop();
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
}
