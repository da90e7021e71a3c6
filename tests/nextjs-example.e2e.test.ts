import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  appCli,
  buildApp,
  copyApp,
  copyStandalone,
  installExample,
  packTarball,
  startServer,
  type Bundler,
  type NextServer,
} from "./support/next-app.ts";
import { startOutputServer, type OutputServer } from "./support/output-server.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";
import { newSecret, post, request, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// examples/nextjs as a user gets it: genstore from the packed tarball, Next.js 16 and React
// from the registry, built once per bundler (Turbopack, Next's default, and webpack) with
// `output: "standalone"`, then served by the standalone server, copied away from the app,
// on the embedded database, and (Turbopack's build) by `next start` on PostgreSQL, through a
// proxy the test can cut. Deliveries are signed by svix, as Replicate signs them.

const MINUTE = 60_000;
const secret = newSecret();
const cronSecret = "cron-secret-for-tests";
const testDatabaseUrl = process.env.TEST_DATABASE_URL;

let work: string;
let app: string;
/**
 * webpack's build (about a minute, most of it tracing files in one JS thread) runs in a copy
 * of the app while Turbopack's build and tests run in the app itself.
 */
let webpackApp: string | undefined;
let webpackBuild: Promise<{ ok: true } | { ok: false; error: unknown }> | undefined;
let outputs: OutputServer;
/** While true, /gate/ answers 503: a download that fails after the 200. */
let gateClosed = false;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "genstore-example-"));
  outputs = await startOutputServer({ lifetimeMs: 30 * MINUTE });
  outputs.route("/gate/out-0.png", (_req, res) => {
    if (gateClosed) {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { "content-type": "image/png", "content-length": outputs.bytes.png.length });
    res.end(outputs.bytes.png);
  });
  app = await installExample(await packTarball(work));
  webpackApp = await copyApp(app);
  webpackBuild = buildApp(webpackApp, "webpack").then(
    () => ({ ok: true as const }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}, 10 * MINUTE);

afterAll(async () => {
  await outputs?.close();
  await webpackBuild;
  if (webpackApp) await rm(webpackApp, { recursive: true, force: true });
  if (app) await rm(app, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

async function deliver(server: NextServer, output: string, options: { prediction?: Record<string, unknown> } = {}) {
  const prediction = options.prediction ?? samplePrediction({ output: [outputs.url(output)] });
  const signed = svixSigned(JSON.stringify(prediction), secret);
  // The first request opens the database (on the embedded one: creates and migrates it), so no tight timeout.
  const response = await fetch(`${server.url}/api/webhooks/replicate?userId=user_1`, {
    method: "POST",
    headers: signed.headers,
    body: signed.body,
    signal: AbortSignal.timeout(3 * MINUTE),
  });
  const body = await response.text();
  const reply = {
    status: response.status,
    body,
    json: JSON.parse(body) as Record<string, any>,
    headers: Object.fromEntries(response.headers),
  };
  return { reply, prediction, webhookId: signed.id };
}

function drain(server: NextServer) {
  return request("GET", `${server.url}/api/genstore/drain`, undefined, { authorization: `Bearer ${cronSecret}` });
}

/** The files under a local storage folder, relative to it (metadata sidecars left out). */
async function storedFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile() && !e.name.startsWith("."))
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe.each<Bundler>(["turbopack", "webpack"])("examples/nextjs built with %s", (bundler) => {
  let standalone: string;
  /** The installed app this bundler built. */
  let built: string;

  beforeAll(async () => {
    if (bundler === "webpack") {
      const outcome = await webpackBuild!;
      if (!outcome.ok) throw outcome.error;
      built = webpackApp!;
    } else {
      await buildApp(app, bundler);
      built = app;
    }
    standalone = await copyStandalone(built);
  }, 10 * MINUTE);

  afterAll(async () => {
    if (standalone) await rm(standalone, { recursive: true, force: true });
  });

  it(
    "serves the route from the standalone server on the embedded database, with nothing opened at build",
    async () => {
      const home = await mkdtemp(path.join(os.tmpdir(), "genstore-example-home-"));
      const storage = path.join(home, "outputs");
      const server = await startServer(standalone, "standalone", {
        GENSTORE_HOME: home,
        GENSTORE_STORAGE_DIR: storage,
        GENSTORE_OUTPUT_HOSTS: outputs.hostEntry,
        REPLICATE_WEBHOOK_SECRET: secret,
        CRON_SECRET: cronSecret,
      });
      try {
        // The build created no database, in the app or anywhere.
        expect(await readdir(built)).not.toContain(".genstore");
        expect(await readdir(home)).toEqual([]);

        const { reply, prediction } = await deliver(server, `/png/embedded-${bundler}.png`);
        expect(reply.status, reply.body).toBe(200);
        expect(reply.json).toMatchObject({ ok: true, predictionId: prediction.id, duplicate: false });
        const files = await waitFor(
          async () => ((await storedFiles(storage)).length === 2 ? storedFiles(storage) : undefined),
          2 * MINUTE,
          "the output and its thumbnail",
        );
        expect(files).toEqual([
          expect.stringMatching(/^generated\/user_1\/c[a-z0-9]+_0\.png$/),
          expect.stringMatching(/^thumbnails\/generated\/user_1\/c[a-z0-9]+_0\.webp$/),
        ]);
        // The files are written before the row and the delivery are marked done: wait for those too.
        const idle = await waitFor(
          async () => {
            const answer = (await drain(server)).json as { remaining: Record<string, number> };
            return Object.values(answer.remaining).every((n) => n === 0) ? answer : undefined;
          },
          2 * MINUTE,
          "the queue to be empty",
        );
        expect(idle).toEqual({ processed: 0, failed: 0, remaining: { pending: 0, processing: 0, failed: 0 } });
      } finally {
        await server.stop();
      }
      // The row, read by the app's own CLI once the server has let go of the database.
      const list = await appCli(built, ["list", "--json", "--home", home]);
      expect(list.code, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout)).toEqual([
        expect.objectContaining({ userId: "user_1", status: "succeeded", storageContext: "generated" }),
      ]);
      await rm(home, { recursive: true, force: true });
    },
    5 * MINUTE,
  );

  // What follows is the route's behaviour at run time (503 and Retry-After, recovery without a
  // restart, the drain route), the same code whichever bundler built it: run under the
  // default bundler only, to keep the suite short. Each bundler's own failures (resolving the
  // package, the schema engine, file URLs, tracing) show in the standalone test above.
  if (!testDatabaseUrl || bundler !== "turbopack") return;

  describe("on PostgreSQL under next start", () => {
    let proxy: TcpProxy;
    let server: NextServer;
    let schema: string;
    let home: string;
    let admin: pg.Client;

    beforeAll(async () => {
      const target = new URL(testDatabaseUrl);
      proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
      schema = `genstore_next_${bundler}_${process.pid}`;
      admin = new pg.Client({ connectionString: testDatabaseUrl });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.query(`CREATE SCHEMA "${schema}"`);
      home = await mkdtemp(path.join(os.tmpdir(), "genstore-example-home-"));
      const url = new URL(testDatabaseUrl);
      url.port = String(proxy.port);
      url.searchParams.set("schema", schema);
      // Where a Next.js app keeps its settings; the CLI run in the app's folder reads it too.
      await writeFile(
        path.join(app, ".env.local"),
        [
          `DATABASE_URL=${url.toString()}`,
          // genstore's own tables in the same schema, so the test reads them in one place.
          `GENSTORE_SCHEMA=${schema}`,
          `GENSTORE_HOME=${home}`,
          `GENSTORE_OUTPUT_HOSTS=${outputs.hostEntry}`,
          `REPLICATE_WEBHOOK_SECRET=${secret}`,
          `CRON_SECRET=${cronSecret}`,
          "",
        ].join("\n"),
      );
      server = await startServer(app, "next start", {});
    }, 5 * MINUTE);

    afterAll(async () => {
      await server?.stop();
      await proxy?.stop();
      await rm(path.join(app, ".env.local"), { force: true });
      await admin?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin?.end();
      if (home) await rm(home, { recursive: true, force: true });
    });

    const row = async (replicateId: unknown) =>
      (
        await admin.query<{ userId: string; status: string; storageContext: string; storageKeys: { key: string }[] }>(
          `SELECT "userId", status, "storageContext", "storageKeys" FROM "${schema}"."Generation" WHERE "replicateId" = $1`,
          [replicateId],
        )
      ).rows[0];
    const deliveryRow = async (id: string) =>
      (
        await admin.query<{ state: string; attempts: number; lastError: string | null }>(
          `SELECT state, attempts, "lastError" FROM "${schema}"."WebhookDelivery" WHERE id = $1`,
          [id],
        )
      ).rows[0];

    it(
      "answers 503 until the database is reachable and migrated, then stores, without a restart",
      async () => {
        await proxy.stop();
        const unreachable = await deliver(server, `/png/a-${bundler}.png`);
        expect(unreachable.reply.status, unreachable.reply.body).toBe(503);
        expect(unreachable.reply.headers["retry-after"]).toBe("10");
        expect(unreachable.reply.json.error).toMatch(/Cannot reach PostgreSQL/);

        await proxy.start();
        const unmigrated = await deliver(server, `/png/a-${bundler}.png`);
        expect(unmigrated.reply.status, unmigrated.reply.body).toBe(503);
        expect(unmigrated.reply.headers["retry-after"]).toBe("10");
        expect(unmigrated.reply.json).toMatchObject({ error: expect.stringMatching(/pending (genstore )?migration/) });
        expect(unmigrated.reply.json.hint).toMatch(/genstore db migrate/);

        // The CLI in the app's folder finds DATABASE_URL in .env.local and says so.
        const migrate = await appCli(app, ["db", "migrate"]);
        expect(migrate.code, migrate.stderr).toBe(0);
        expect(migrate.stderr).toContain(`(schema ${schema})`);
        expect(migrate.stderr).toContain("settings from .env.local");

        const { reply, prediction, webhookId } = await deliver(server, `/png/a-${bundler}.png`);
        expect(reply.status, reply.body).toBe(200);
        const stored = await waitFor(
          async () => {
            const r = await row(prediction.id);
            return r?.status === "succeeded" ? r : undefined;
          },
          2 * MINUTE,
          "the row",
        );
        expect(stored).toMatchObject({ userId: "user_1", storageContext: "generated" });
        expect(stored.storageKeys.map((k) => k.key)).toEqual([
          expect.stringMatching(/^generated\/user_1\/.+_0\.png$/),
          expect.stringMatching(/^thumbnails\/generated\/user_1\/.+_0\.webp$/),
        ]);
        expect(await storedFiles(path.join(home, "storage"))).toEqual(stored.storageKeys.map((k) => k.key).sort());

        const again = await post(
          `${server.url}/api/webhooks/replicate?userId=user_1`,
          JSON.stringify(prediction),
          svixSigned(JSON.stringify(prediction), secret, { id: webhookId }).headers,
        );
        expect(again.status).toBe(200);
        expect(again.json).toMatchObject({ duplicate: true });
        const forged = svixSigned(JSON.stringify(prediction), newSecret());
        expect((await post(`${server.url}/api/webhooks/replicate`, forged.body, forged.headers)).status).toBe(401);
        expect(outputs.count(`/png/a-${bundler}.png`)).toBe(1);
      },
      5 * MINUTE,
    );

    it(
      "answers 503 while the database is away, and stores again once it is back",
      async () => {
        await appCli(app, ["db", "migrate"]);
        await proxy.stop();
        const during = await deliver(server, `/png/outage-${bundler}.png`);
        expect(during.reply.status, during.reply.body).toBe(503);
        expect(during.reply.headers["retry-after"]).toBeDefined();
        expect(typeof during.reply.json.error).toBe("string");

        await proxy.start();
        const after = await deliver(server, `/png/outage-${bundler}.png`, { prediction: during.prediction });
        expect(after.reply.status, after.reply.body).toBe(200);
        await waitFor(async () => (await row(during.prediction.id))?.status === "succeeded", 2 * MINUTE, "the row");
      },
      5 * MINUTE,
    );

    it(
      "finishes a delivery whose download failed after the 200 through the drain route, with no redelivery",
      async () => {
        await appCli(app, ["db", "migrate"]);
        gateClosed = true;
        const { reply, prediction, webhookId } = await deliver(server, "/gate/out-0.png");
        expect(reply.status, reply.body).toBe(200);
        const failed = await waitFor(
          async () => {
            const d = await deliveryRow(webhookId);
            return d?.state === "pending" && d.attempts === 1 ? d : undefined;
          },
          2 * MINUTE,
          "the failed attempt",
        );
        expect(failed.lastError).toMatch(/Could not download output/);
        expect((await row(prediction.id))?.status).toBe("processing");

        gateClosed = false;
        // The retry waits out its backoff (5 s); the cron route is called until it is done.
        const drained = await waitFor(
          async () => {
            await new Promise((resolve) => setTimeout(resolve, 1000));
            const answer = await drain(server);
            expect(answer.status, answer.body).toBe(200);
            return (await deliveryRow(webhookId))?.state === "done" ? answer : undefined;
          },
          2 * MINUTE,
          "the drain",
        );
        expect(drained.json.remaining).toEqual({ pending: 0, processing: 0, failed: 0 });
        const stored = await row(prediction.id);
        expect(stored?.status).toBe("succeeded");
        expect(stored?.storageKeys.map((k) => k.key)).toHaveLength(2);
        expect((await deliveryRow(webhookId))?.attempts).toBe(2);

        const unauthorized = await request("GET", `${server.url}/api/genstore/drain`);
        expect(unauthorized.status).toBe(401);
      },
      5 * MINUTE,
    );
  });
});
