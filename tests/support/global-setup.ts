import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { startMotoServer, type MotoServer } from "./moto.ts";

// Starts one S3-compatible server (moto_server, Python moto 5.2) on loopback for the whole
// run; each test file uses buckets of its own.

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
    /** A migrated PGlite data folder as a tarball (see tests/support/db.ts). */
    pgliteTemplate: string;
    /** A PGlite data folder straight after initdb, nothing of genstore's in it. */
    pgliteBlankTemplate: string;
    /** The migrated database as a folder, to copy into a GENSTORE_HOME as its db/ (tests/support/cli.ts). */
    embeddedHomeDb: string;
  }
}

let moto: MotoServer | undefined;
let tempDir: string | undefined;

export async function setup(project: TestProject) {
  tempDir = await mkdtemp(path.join(os.tmpdir(), "genstore-tests-"));
  const [templates] = await Promise.all([makePgliteTemplates(tempDir), startMoto(project), buildCli()]);
  project.provide("pgliteTemplate", templates.migrated);
  project.provide("pgliteBlankTemplate", templates.blank);
  project.provide("embeddedHomeDb", templates.folder);
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

/** initdb takes seconds: each test starts from a copy of one of these instead. */
async function makePgliteTemplates(dir: string): Promise<{ migrated: string; blank: string; folder: string }> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { databaseFromPGlite } = await import("../../src/db/client.ts");
  const { applyMigrations } = await import("../../src/db/migrations.ts");
  const pglite = await PGlite.create();
  const dump = async (name: string) => {
    const file = path.join(dir, name);
    await writeFile(file, Buffer.from(await (await pglite.dumpDataDir("none")).arrayBuffer()));
    return file;
  };
  const blank = await dump("pglite-blank.tar");
  const db = await databaseFromPGlite(pglite, "the template database");
  await applyMigrations(db);
  const migrated = await dump("pglite-template.tar");
  await db.close();
  // The binary opens a folder: the same database, written out once (PGlite loads a tarball into a folder).
  const folder = path.join(dir, "home-db");
  const copy = await PGlite.create({ dataDir: folder, loadDataDir: new Blob([await readFile(migrated)]) });
  await copy.close();
  return { migrated, blank, folder };
}

async function startMoto(project: TestProject) {
  moto = await startMotoServer();
  project.provide("s3Endpoint", moto.endpoint);
}

export async function teardown() {
  moto?.stop();
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
}
