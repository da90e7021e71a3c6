import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, utimes, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { bin, cleanEnv, genstore, migratedHome } from "./support/cli.ts";
import { tempDir } from "./support/pipeline-fixtures.ts";
import { newSecret } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// Where the README promises a clear error and a documented exit code, the binary gives one
// (exit 1 means "this is a bug"); serve-webhook says Ready only once it can store.

const tempHome = () => tempDir("genstore-cli-hardening-");

/** serve-webhook (or another server) on the embedded database of home. */
async function serveWebhook(home: string, args: string[] = [], command = "serve-webhook") {
  const child = spawn(process.execPath, [bin, command, ...(args.includes("--port") ? [] : ["--port", "0"]), ...args], {
    env: cleanEnv({ GENSTORE_HOME: home, REPLICATE_WEBHOOK_SECRET: newSecret() }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

// Each test starts the binary on a fresh embedded database (initdb: seconds, more on a busy machine).
describe("clear errors, not exit 1 (the binary)", () => {
  it("list --since 99999999999d is a usage error (2)", async () => {
    const result = await genstore(["list", "--since", "99999999999d"], { GENSTORE_HOME: await tempHome() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^error: Invalid option: --since must be an ISO date or a duration/);
  });

  it("gallery --counts-max-age soon is a usage error (2), before anything opens", async () => {
    const home = await tempHome();
    const result = await genstore(["gallery", "--port", "0", "--counts-max-age", "soon"], { GENSTORE_HOME: home });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^error: Invalid option: --counts-max-age must be a duration such as 10s/);
  });

  it("GENSTORE_HOME under a file is a database error (4) naming the folder", async () => {
    const home = await tempHome();
    await writeFile(path.join(home, "a-file"), "");
    const result = await genstore(["list"], { GENSTORE_HOME: path.join(home, "a-file", "home") });
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/^error: Cannot open the embedded database in .*a-file\/home\/db: ENOTDIR/);
    expect(result.stderr).toMatch(/GENSTORE_HOME/);
  });

  it("GENSTORE_HOME on a read-only mount is a database error (4) naming the folder", async () => {
    const home = await tempHome();
    // A private mount namespace: the read-only file system exists for this one command only.
    const result = spawnSync(
      "unshare",
      ["-m", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$1" && exec "$2" "$3" list', "sh", home, process.execPath, bin],
      { env: cleanEnv({ GENSTORE_HOME: path.join(home, "genstore") }), encoding: "utf8", timeout: 240_000 },
    );
    expect(result.status, result.stderr).toBe(4);
    expect(result.stderr).toMatch(/^error: Cannot open the embedded database in .*genstore\/db: /);
    expect(result.stderr).toMatch(/not writable/);
  });

  // Found before the database opens (no db/ folder is made): seconds sooner on the embedded one.
  it.each(["serve-webhook", "gallery"])("%s on a port in use is a configuration error (3)", async (command) => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => new Promise<void>((resolve) => taken.close(() => resolve())));
    const port = (taken.address() as net.AddressInfo).port;
    const home = await tempHome();
    const receiver = await serveWebhook(home, ["--port", String(port)], command);
    const result = { code: await receiver.exited, stderr: receiver.stderr() };
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toMatch(
      new RegExp(`^error: Cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use\\.`),
    );
    expect(existsSync(path.join(home, "db"))).toBe(false);
  });

  it.each(["serve-webhook", "gallery"])("%s --host nosuch.invalid is a configuration error (3)", async (command) => {
    const home = await tempHome();
    const receiver = await serveWebhook(home, ["--host", "nosuch.invalid"], command);
    const result = { code: await receiver.exited, stderr: receiver.stderr() };
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toMatch(
      /^error: Cannot listen on nosuch\.invalid:0: the host nosuch\.invalid does not resolve/,
    );
    expect(existsSync(path.join(home, "db"))).toBe(false);
  });

  it("migrate-keys --prefix ../ is refused as unsafe (8), before storage is touched", async () => {
    const result = await genstore(["migrate-keys", "--prefix", "../"], { GENSTORE_HOME: await tempHome() });
    expect(result.code).toBe(8);
    expect(result.stderr).toMatch(/^error: Refusing --prefix "\.\.\/": a key under it has a "\.\." segment/);
  });
});

describe("serve-webhook starts only when it can store (the binary)", () => {
  it("exits 5 with a clear error, before Ready, when storage is not writable", async () => {
    const home = await migratedHome();
    await writeFile(path.join(home, "storage"), "a file where the storage folder should be");
    const receiver = await serveWebhook(home);
    expect(await receiver.exited).toBe(5);
    expect(receiver.stdout()).toBe("");
    expect(receiver.stderr()).not.toMatch(/Ready/);
    expect(receiver.stderr()).toMatch(/error: Local storage folder .*storage is not a writable folder/);
  });

  it("removes temp files left by a killed write (older than any write in flight), and only those", async () => {
    const home = await migratedHome();
    const folder = path.join(home, "storage", "generated", "user_1");
    await mkdir(folder, { recursive: true });
    const stale = path.join(folder, ".g1_0.png.0123456789abcdef.partial");
    const staleSidecar = path.join(folder, ".g1_0.png.meta.json.0123456789abcdef.partial");
    const fresh = path.join(folder, ".g2_0.png.fedcba9876543210.partial");
    const object = path.join(folder, "g3_0.png");
    for (const file of [stale, staleSidecar, fresh, object]) await writeFile(file, "bytes");
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const file of [stale, staleSidecar, object]) await utimes(file, twoHoursAgo, twoHoursAgo);

    const receiver = await serveWebhook(home);
    await waitFor(() => /Ready\./.test(receiver.stderr()), 100_000, "serve-webhook to be ready");
    // The line comes once the sweep is over (the files go first).
    await waitFor(
      () => /removed 2 temp files left by interrupted writes/.test(receiver.stderr()),
      undefined,
      "the sweep's line",
    );
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(staleSidecar)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(object)).toBe(true);
  });
});
