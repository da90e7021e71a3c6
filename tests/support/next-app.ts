import { execFile, spawn, type ChildProcess } from "node:child_process";
// eslint-disable-next-line n/no-unsupported-features/node-builtins -- fs.cp works on Node 20 (tests only)
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { cleanEnv } from "./cli.ts";
import { freePort } from "./moto.ts";
import { request } from "./webhook-deliveries.ts";

// genstore as a user gets it: the packed tarball (`npm pack`, which runs `prepare`),
// installed into a copy of examples/nextjs with the registry's Next.js and React, built
// with `next build` and served by `next start` or the standalone server.

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");

/** The environment of a child process: none of the developer's genstore settings, no NODE_ENV=test from the runner. */
export function childEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = cleanEnv({ NEXT_TELEMETRY_DISABLED: "1", ...env });
  for (const key of Object.keys(clean)) if (key === "NODE_ENV" || key.startsWith("VITEST")) delete clean[key];
  return { ...clean, ...env };
}

/**
 * `npm pack` of this repository into dir; returns the tarball's path. The build that
 * `prepare` would run is run here (with the type declarations), and pack itself runs no
 * script, so that nothing rewrites what other test files are reading meanwhile.
 */
export async function packTarball(dir: string): Promise<string> {
  await run(process.execPath, ["scripts/build.mjs", "--types"], { cwd: root, env: childEnv() });
  const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", dir], {
    cwd: root,
    env: childEnv(),
    maxBuffer: 64 * 1024 * 1024,
  });
  return path.join(dir, stdout.trim().split("\n").at(-1)!.trim());
}

/** Copies examples/nextjs into a new folder and installs it with genstore from the tarball. */
export async function installExample(tarball: string): Promise<string> {
  const app = await mkdtemp(path.join(os.tmpdir(), "genstore-nextjs-"));
  await cp(path.join(root, "examples/nextjs"), app, {
    recursive: true,
    filter: (source) => !/[\\/](node_modules|\.next)$/.test(source),
  });
  const manifest = JSON.parse(await readFile(path.join(app, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };
  manifest.dependencies.genstore = `file:${tarball}`;
  await writeFile(path.join(app, "package.json"), JSON.stringify(manifest, null, 2));
  await npm(app, ["install", "--no-audit", "--no-fund", "--prefer-offline"]);
  return app;
}

/** A copy of an installed app (its node_modules too, not its build), to build beside it. */
export async function copyApp(app: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-nextjs-"));
  await cp(app, dir, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (source) => !/[\\/]\.next$/.test(source),
  });
  return dir;
}

export async function npm(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await run("npm", args, { cwd, env: childEnv(), maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

export type Bundler = "turbopack" | "webpack";

/** `next build` (Turbopack, Next 16's default, or --webpack); the output is in the error when it fails. */
export async function buildApp(app: string, bundler: Bundler): Promise<void> {
  await rm(path.join(app, ".next"), { recursive: true, force: true });
  const args = ["node_modules/next/dist/bin/next", "build", ...(bundler === "webpack" ? ["--webpack"] : [])];
  try {
    await run(process.execPath, args, { cwd: app, env: childEnv(), maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`next build (${bundler}) failed:\n${e.stdout ?? ""}\n${e.stderr ?? e.message}`, { cause: error });
  }
}

/** The standalone server (.next/standalone), copied away from the app so it can only use what was traced. */
export async function copyStandalone(app: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-standalone-"));
  await cp(path.join(app, ".next/standalone"), dir, { recursive: true, verbatimSymlinks: true });
  return dir;
}

export interface NextServer {
  url: string;
  pid: number;
  /** Everything the server printed. */
  output(): string;
  stop(): Promise<void>;
}

/** Starts `next start` (cwd: the app) or `node server.js` (cwd: a standalone copy) on a free port. */
export async function startServer(
  cwd: string,
  how: "next start" | "standalone",
  env: Record<string, string>,
): Promise<NextServer> {
  const port = await freePort();
  const args =
    how === "next start"
      ? ["node_modules/next/dist/bin/next", "start", "-p", String(port), "-H", "127.0.0.1"]
      : ["server.js"];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd,
    env: childEnv({ ...env, PORT: String(port), HOSTNAME: "127.0.0.1" }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
  };
  for (const deadline = Date.now() + 120_000; ;) {
    if (child.exitCode !== null) throw new Error(`${how} exited (${child.exitCode}):\n${output}`);
    try {
      await request("GET", `${url}/`);
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`${how} did not answer within 120 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return { url, pid: child.pid!, output: () => output, stop };
}

/** Runs the installed genstore CLI in the app's folder (so it reads the app's .env files). */
export async function appCli(
  app: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = path.join(app, "node_modules/genstore/bin/genstore");
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], {
      cwd: app,
      env: childEnv(env),
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
