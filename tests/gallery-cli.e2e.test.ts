import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { bin, cleanEnv } from "./support/cli.ts";
import { createTestDatabase } from "./support/db.ts";
import { tempDir } from "./support/pipeline-fixtures.ts";

// `genstore gallery` as an operator runs it: the URL on stdout, a page that answers, Ctrl-C
// to stop; a token when it listens beyond loopback.

interface Running {
  child: ChildProcess;
  url: Promise<string>;
  stderr: () => string;
  exit: Promise<number | null>;
}

function startGallery(args: string[], env: Record<string, string> = {}): Running {
  const child = spawn(process.execPath, [bin, "gallery", "--port", "0", ...args], {
    env: cleanEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes("\n")) resolve(stdout.split("\n")[0]!);
    });
    void exit.then((code) => reject(new Error(`gallery exited (${code}) before printing its URL:\n${stderr}`)));
  });
  url.catch(() => {}); // awaited by the tests that expect a URL
  onTestFinished(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return { child, url, stderr: () => stderr, exit };
}

/** A GENSTORE_HOME whose embedded database is already migrated (initdb takes seconds). */
async function home(): Promise<string> {
  const dir = await tempDir("genstore-gallery-home-");
  const database = await createTestDatabase("embedded", { dir: path.join(dir, "db"), cleanup: "manual" });
  await database.drop();
  return dir;
}

// Each run starts Node and opens the database: seconds on a busy machine.
describe("genstore gallery", () => {
  it("prints its URL on stdout, serves the page on loopback, and stops on Ctrl-C", async () => {
    const gallery = startGallery(["--home", await home()]);
    const url = await gallery.url;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("genstore gallery");
    const counts = await fetch(new URL("/api/counts", url));
    expect(await counts.json()).toMatchObject({ all: 0, generated: 0, edited: 0, upscaled: 0, videos: 0 });
    await expect.poll(() => gallery.stderr()).toMatch(/Read-only\. Ctrl-C to stop\./);

    gallery.child.kill("SIGINT");
    expect(await gallery.exit).toBe(0);
    expect(gallery.stderr()).toContain("Stopped.");
  });

  it("beyond loopback, prints a URL with a generated token and refuses requests without it", async () => {
    const gallery = startGallery(["--home", await home(), "--host", "0.0.0.0"]);
    const url = new URL(await gallery.url);
    const token = url.searchParams.get("token");
    expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    await expect.poll(() => gallery.stderr()).toContain("token generated for this run");
    const base = `http://127.0.0.1:${url.port}`;
    expect((await fetch(`${base}/api/counts`)).status).toBe(401);
    const signedIn = await fetch(`${base}/?token=${token}`, { redirect: "manual" });
    expect(signedIn.status).toBe(303);
    const cookie = signedIn.headers.get("set-cookie")!.split(";")[0]!;
    expect((await fetch(`${base}/api/counts`, { headers: { cookie } })).status).toBe(200);
    gallery.child.kill("SIGTERM");
    expect(await gallery.exit).toBe(0);
  });

  it("opens the page with the system's opener when asked (--open)", async () => {
    const dir = await home();
    const fakeBin = path.join(dir, "bin");
    await mkdir(fakeBin);
    const opened = path.join(dir, "opened.txt");
    await writeFile(path.join(fakeBin, "xdg-open"), `#!/bin/sh\necho "$1" > "${opened}"\n`);
    await chmod(path.join(fakeBin, "xdg-open"), 0o755);
    const gallery = startGallery(["--home", dir, "--open"], { PATH: `${fakeBin}:${process.env.PATH}` });
    const url = await gallery.url;
    await expect.poll(() => readFile(opened, "utf8").catch(() => ""), { timeout: 120_000 }).toBe(`${url}\n`);
    gallery.child.kill("SIGINT");
    expect(await gallery.exit).toBe(0);
  });

  it("refuses a short --token", async () => {
    const gallery = startGallery(["--home", await home(), "--token", "short"]);
    expect(await gallery.exit).toBe(2);
    expect(gallery.stderr()).toMatch(/--token must be at least 16 characters/);
  });
});
