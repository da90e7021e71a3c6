import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";

// The real binary, run as an operator runs it: colour off, and none of the developer's own
// genstore, database, storage or Replicate settings leaking in from the environment.

export const bin = path.resolve("bin/genstore");

const run = promisify(execFile);

/** process.env without DATABASE_URL, GENSTORE_*, S3_*, AWS_* and REPLICATE_*, colour off. */
export function cleanEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(DATABASE_URL|GENSTORE_|S3_|AWS_|REPLICATE_)/.test(k)),
  );
  return { ...clean, NO_COLOR: "1", ...env };
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
