// The reference for bench/webhook.ts: a bare node:http server that reads the body, verifies
// the signature with the standardwebhooks package (what genstore uses), and answers 200 or
// 401. Nothing is stored. Prints its URL on stdout; BENCH_SECRET is the whsec_ secret.
import http from "node:http";
import { Webhook } from "standardwebhooks";

const webhook = new Webhook(process.env.BENCH_SECRET);
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    let ok = true;
    try {
      webhook.verify(Buffer.concat(chunks).toString("utf8"), req.headers);
    } catch {
      ok = false;
    }
    res.writeHead(ok ? 200 : 401, { "content-type": "application/json" }).end(ok ? '{"ok":true}\n' : '{"ok":false}\n');
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
