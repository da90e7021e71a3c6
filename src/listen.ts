// Listening on --port and --host, for both servers (serve-webhook, gallery). A port in use or
// a host that is not this machine's is the operator's to fix, so it is a configuration error
// (exit 3) with one line, not a bug; and it is found before a command opens its database,
// which takes seconds on the embedded one.
import net, { type AddressInfo } from "node:net";
import { ConfigError } from "./errors.ts";

/** Starts `server` listening; resolves with its base URL (http://host:port). */
export function listen(server: net.Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(listenError(error, port, host));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      const bound = boundAddress(server);
      resolve(`http://${bound.host}:${bound.port}`);
    });
  });
}

/** Where a listening server is: its host as a URL writes it (IPv6 in brackets) and its port. */
export function boundAddress(server: net.Server): { host: string; port: number } {
  const address = server.address() as AddressInfo;
  return { host: address.family === "IPv6" ? `[${address.address}]` : address.address, port: address.port };
}

/** Fails as listen() would, now: a probe listens on the address and lets it go at once. */
export async function checkCanListen(port: number, host: string): Promise<void> {
  const probe = net.createServer();
  await listen(probe, port, host);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

function listenError(error: Error, port: number, host: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const where = `${host}:${port}`;
  if (code === "EADDRINUSE")
    return new ConfigError(
      `Cannot listen on ${where}: the port is in use.`,
      "Stop what uses it, or pass another --port (0 picks a free one).",
    );
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME")
    return new ConfigError(
      `Cannot listen on ${where}: the host ${host} does not resolve.`,
      "Pass --host an address of this machine, such as 127.0.0.1 or 0.0.0.0.",
    );
  if (code === "EADDRNOTAVAIL")
    return new ConfigError(
      `Cannot listen on ${where}: that address is not one of this machine's.`,
      "Pass --host an address of this machine, such as 127.0.0.1 or 0.0.0.0.",
    );
  if (code === "EACCES" || code === "EPERM")
    return new ConfigError(
      `Cannot listen on ${where}: permission denied.`,
      "Ports below 1024 need privileges: pass a --port above 1023.",
    );
  return error;
}
