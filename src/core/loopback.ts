// Whether a --host keeps a server on this machine: beyond it, the gallery and serve-webhook's
// /metrics need a token.

export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host);
}
