import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";

// Starts one S3-compatible server (moto_server, see ../shared/NOTES-s3.md) on loopback for
// the whole run; each test file uses buckets of its own.

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
    /** A migrated PGlite data folder as a tarball (see tests/support/db.ts). */
    pgliteTemplate: string;
  }
}

let moto: ChildProcess | undefined;
let tempDir: string | undefined;

export async function setup(project: TestProject) {
  tempDir = await mkdtemp(path.join(os.tmpdir(), "genstore-tests-"));
  const [template] = await Promise.all([makePgliteTemplate(tempDir), startMoto(project), buildCli()]);
  project.provide("pgliteTemplate", template);
}

/** Rebuilds dist/ so tests that spawn bin/genstore run the current sources, not an old bundle. */
function buildCli(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(import.meta.dirname, "../../scripts/build.mjs")], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`scripts/build.mjs failed (${code}):\n${stderr}`))));
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
  const port = await freePort();
  moto = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  moto.stderr?.on("data", (chunk) => (stderr += chunk));
  const endpoint = `http://127.0.0.1:${port}`;
  await waitForHttp(endpoint, 30_000, () => stderr);
  project.provide("s3Endpoint", endpoint);
}

export async function teardown() {
  moto?.kill("SIGTERM");
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function waitForHttp(url: string, timeoutMs: number, log: () => string) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await fetch(url);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`moto_server did not start at ${url} within ${timeoutMs} ms:\n${log()}`);
}
