import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import type { TestProject } from "vitest/node";

// Starts one S3-compatible server (moto_server, see ../shared/NOTES-s3.md) on loopback for
// the whole run; each test file uses buckets of its own.

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
  }
}

let moto: ChildProcess | undefined;

export async function setup(project: TestProject) {
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
