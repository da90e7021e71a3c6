import { execFile } from "node:child_process";
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { childEnv } from "./support/next-app.ts";
import { tempDir } from "./support/pipeline-fixtures.ts";

// genstore as a package: what `npm publish` would ship, and what a linked checkout says when
// it cannot build. tests/nextjs-example.e2e.test.ts installs the packed tarball and runs it.

const run = promisify(execFile);

describe("the package", () => {
  it("passes the prepublish check: dist/, bin/, the types and the schema engine ship, the sources do not", async () => {
    await run(process.execPath, ["scripts/build.mjs", "--types"], { env: childEnv() });
    const { stderr } = await run(process.execPath, ["scripts/check-package.mjs"], {
      env: childEnv(),
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(stderr).toMatch(/genstore \d+\.\d+\.\d+: \d+ files, \d+ bytes packed; ready to publish\./);
  }, 180_000);

  it("prepare in a checkout whose dependencies are not installed (npm install ../genstore) says what to do", async () => {
    const checkout = await tempDir("genstore-checkout-");
    await mkdir(path.join(checkout, "scripts"));
    await copyFile("scripts/prepare.mjs", path.join(checkout, "scripts/prepare.mjs"));
    const error = (await run(process.execPath, [path.join(checkout, "scripts/prepare.mjs")], { env: childEnv() }).catch(
      (e: unknown) => e,
    )) as { code: number; stderr: string };
    expect(error.code).toBe(1);
    expect(error.stderr).toContain(`genstore: cannot build in ${checkout}: its dependencies are not installed`);
    expect(error.stderr).toContain("Run `npm ci` in that folder first");
  });
});
