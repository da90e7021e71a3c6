import { spawn } from "node:child_process";
import net from "node:net";

// moto_server (Python moto 5.2, `pip install 'moto[server]'`) on a free loopback port: one for the
// whole test run (global-setup.ts), and one per benchmark that needs S3.

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

export interface MotoServer {
  endpoint: string;
  stop(): void;
}

/**
 * Starts moto_server and waits until it answers, or rejects, with its stderr, when it exits
 * first. On a busy machine the Python start alone can take a minute: the deadline is only
 * a backstop for a server that hangs.
 */
export async function startMotoServer(deadlineMs = 5 * 60_000): Promise<MotoServer> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  let failed: Error | undefined;
  child.stderr?.on("data", (chunk) => (stderr += chunk));
  child.once("error", (error) => (failed = error));
  child.once("exit", (code, signal) => (failed ??= new Error(`it exited (${signal ?? code})`)));
  const stop = () => void child.kill("SIGTERM");
  process.once("exit", stop);
  for (const deadline = Date.now() + deadlineMs; failed === undefined && Date.now() < deadline;) {
    try {
      await fetch(endpoint);
      return { endpoint, stop };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  stop();
  throw new Error(
    failed
      ? `moto_server did not start: ${failed.message}\n${stderr}`
      : `moto_server did not answer at ${endpoint} within ${deadlineMs / 1000} s:\n${stderr}`,
  );
}
