import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, statSync } from "node:fs";
// eslint-disable-next-line n/no-unsupported-features/node-builtins -- fs.cp works on Node 20 (tests only)
import { cp } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { expect, inject, onTestFinished } from "vitest";
import { tempDir } from "./pipeline-fixtures.ts";
import { waitFor } from "./wait.ts";

// The real binary, run as an operator runs it: colour off, and none of the developer's own
// genstore, database, storage or Replicate settings leaking in from the environment.

export const bin = path.resolve("bin/genstore");

/** bin/genstore runs dist/ when it exists (npm ci builds it): it must not predate source, which the test exercises. */
export function expectBuiltAfter(source: string): void {
  if (existsSync("dist/cli.js"))
    expect(statSync("dist/cli.js").mtimeMs, `dist/ is older than ${source}: run npm run build`).toBeGreaterThan(
      statSync(source).mtimeMs,
    );
}

const run = promisify(execFile);

/** process.env without DATABASE_URL, GENSTORE_*, S3_*, AWS_* and REPLICATE_*, colour off. */
export function cleanEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(DATABASE_URL|GENSTORE_|S3_|AWS_|REPLICATE_)/.test(k)),
  );
  return { ...clean, NO_COLOR: "1", ...env };
}

/**
 * A GENSTORE_HOME whose embedded database is made and migrated already: a copy of one made
 * once per run (the binary's initdb and migrations take seconds, more on a busy machine).
 * Removed when the test ends.
 */
export async function migratedHome(prefix = "genstore-home-"): Promise<string> {
  const home = await tempDir(prefix);
  await copyMigratedDatabase(home);
  return home;
}

/** Puts the migrated embedded database into home/db (home need not exist). */
export async function copyMigratedDatabase(home: string): Promise<void> {
  await cp(inject("embeddedHomeDb"), path.join(home, "db"), { recursive: true });
}

/** Runs `genstore <args>` to the end; a non-zero exit is returned as its code, not thrown. */
export async function genstore(
  args: string[],
  env: Record<string, string> = {},
  options: { cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    // No time limit of its own: a busy machine makes a run slow, not wrong (vitest's testTimeout stops a hang).
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: cleanEnv(env), cwd: options.cwd });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

export interface ServeWebhookProcess {
  child: ChildProcess;
  /** The webhook URL it printed on stdout. */
  url: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `genstore serve-webhook --port 0 <args>` and waits for its URL; killed when the test ends. */
export async function startBinary(env: Record<string, string>, args: string[] = []): Promise<ServeWebhookProcess> {
  const started = startCommand(
    env,
    ["serve-webhook", "--port", "0", ...args],
    (out) => /^(http:\/\/127\.0\.0\.1:\d+\/api\/webhooks\/replicate)$/m.exec(out.stdout)?.[1],
  );
  const { ready, ...rest } = await started;
  return { ...rest, url: ready };
}

/** Starts `genstore worker <args>` and waits for its "Ready." line; killed when the test ends. */
export async function startWorker(env: Record<string, string>, args: string[] = []) {
  return startCommand(env, ["worker", ...args], (out) => (/^✔ Ready\. /m.test(out.stderr) ? true : undefined));
}

/** Starts a long-running `genstore <args>` and waits until ready() finds what it prints when ready. */
async function startCommand<T>(
  env: Record<string, string>,
  args: string[],
  ready: (output: { stdout: string; stderr: string }) => T | undefined,
) {
  const child = spawn(process.execPath, [bin, ...args], {
    env: cleanEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = { stdout: "", stderr: "" };
  child.stdout.on("data", (chunk) => (output.stdout += chunk));
  child.stderr.on("data", (chunk) => (output.stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const found = await waitFor(
    () =>
      ready(output) ??
      (child.exitCode !== null
        ? Promise.reject(new Error(`genstore ${args[0]} exited ${child.exitCode}: ${output.stderr}`))
        : undefined),
    undefined,
    `genstore ${args[0]} to be ready`,
  );
  return { child, ready: found, stderr: () => output.stderr, exited };
}
