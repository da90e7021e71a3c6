import http from "node:http";
import net from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import { StorageError } from "../src/errors.ts";
import { createS3Client, createS3Storage, S3_DEADLINES, type S3StorageConfig } from "../src/storage/s3.ts";

// Every storage call has a deadline: an S3 server that accepts connections and never
// answers, or stops in the middle of a body, fails the call in seconds instead of holding a
// worker for good. Servers on loopback; deadlines shortened so the test does not wait long.

const deadlines = { connectMs: 2_000, firstByteMs: 1_000, idleMs: 1_000 };

/** Accepts connections, reads what comes, never answers. */
async function blackHole(): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("data", () => {});
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/** Answers every request with headers announcing 1 MB and 10 bytes of it, then nothing more. */
async function stallingBody(): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "image/png", "content-length": String(1_000_000), etag: '"abc"' });
    res.write(Buffer.alloc(10));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

function storageAt(endpoint: string) {
  const config: S3StorageConfig = {
    provider: "aws",
    bucket: "bucket",
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    checksums: "WHEN_REQUIRED",
  };
  const client = createS3Client(config, { credentials: { accessKeyId: "test", secretAccessKey: "test" } }, deadlines);
  onTestFinished(() => client.destroy());
  return createS3Storage(config, client);
}

describe("S3 deadlines", () => {
  it("has deadlines by default for connecting, the first byte and no progress", () => {
    for (const value of Object.values(S3_DEADLINES)) {
      expect(value).toBeGreaterThan(0);
      expect(value).toBeLessThanOrEqual(120_000);
    }
  });

  it.each([
    ["head", (s: ReturnType<typeof storageAt>) => s.head("generated/u1/g1_0.png")],
    ["put", (s: ReturnType<typeof storageAt>) => s.put("generated/u1/g1_0.png", Buffer.from("bytes"))],
    ["get", (s: ReturnType<typeof storageAt>) => s.get("generated/u1/g1_0.png")],
    ["check", (s: ReturnType<typeof storageAt>) => s.check()],
  ])("%s against a server that accepts and never answers fails with a StorageError", async (_, call) => {
    const storage = storageAt(await blackHole());
    const error = await call(storage).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StorageError);
    expect((error as Error).message).toMatch(/Cannot reach S3 at http:\/\/127\.0\.0\.1:\d+ \(timed out/);
  });

  it("a streamed get whose body stops arriving fails instead of waiting forever", async () => {
    const storage = storageAt(await stallingBody());
    const body = await storage.get("generated/u1/g1_0.png");
    const read = (async () => {
      for await (const chunk of body) void chunk;
    })();
    await expect(read).rejects.toThrow(/timed out|aborted|premature|ECONNRESET/i);
  });
});
