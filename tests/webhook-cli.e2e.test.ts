import { afterEach, describe, expect, it } from "vitest";
import { createDeliveryQueue } from "../src/webhook/queue.ts";
import { createWebhookServer, type WebhookServer } from "../src/webhook/http-server.ts";
import { genstore } from "./support/cli.ts";
import { createTestDatabase } from "./support/db.ts";
import { freePort } from "./support/moto.ts";
import { newSecret } from "./support/webhook-deliveries.ts";

// serve-webhook's and trigger's exit codes and output, through the real binary.

const servers: WebhookServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function receiver(secret: string) {
  const { db } = await createTestDatabase("embedded");
  const server = createWebhookServer({ queue: createDeliveryQueue(db), secret });
  servers.push(server);
  return { db, url: `${await server.listen(0, "127.0.0.1")}/api/webhooks/replicate` };
}

describe("serve-webhook and trigger (the binary)", () => {
  it("serve-webhook refuses to start without a secret: exit 3 and a hint", async () => {
    const result = await genstore(["serve-webhook", "--port", "0"], { GENSTORE_HOME: "/nonexistent-genstore-home" });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/^error: Missing configuration: REPLICATE_WEBHOOK_SECRET/);
    expect(result.stderr).toMatch(/--insecure-no-verify/);
  });

  it("serve-webhook refuses a retry window that is not a duration: the flag exits 2, GENSTORE_DELIVERY_RETRY_WINDOW exits 3", async () => {
    const env = { GENSTORE_HOME: "/nonexistent-genstore-home", REPLICATE_WEBHOOK_SECRET: newSecret() };
    const flag = await genstore(["serve-webhook", "--port", "0", "--retry-window", "soon"], env);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(
      /^error: Invalid option: --retry-window must be a duration such as 1h, 90m or 2h \(got "soon"\)/,
    );
    const variable = await genstore(["serve-webhook", "--port", "0"], { ...env, GENSTORE_DELIVERY_RETRY_WINDOW: "0s" });
    expect(variable.code).toBe(3);
    expect(variable.stderr).toMatch(/^error: GENSTORE_DELIVERY_RETRY_WINDOW must be a duration such as 1h/);
  });

  it("trigger sends a signed sample: exit 0, the answer on stdout", async () => {
    const secret = newSecret();
    const r = await receiver(secret);
    const result = await genstore(["trigger", "--url", r.url, "--prompt", "[VIDEO] a fox", "--user", "user_1"], {
      REPLICATE_WEBHOOK_SECRET: secret,
    });
    expect(result.code).toBe(0);
    const answer = JSON.parse(result.stdout);
    expect(answer).toMatchObject({ ok: true, duplicate: false });
    expect(result.stderr).toMatch(/← 200 OK/);
    const [row] = await r.db.query<{ predictionId: string; query: unknown; body: { input: { prompt: string } } }>(
      `SELECT "predictionId", query, body FROM "WebhookDelivery"`,
    );
    expect(row).toMatchObject({
      predictionId: answer.predictionId,
      query: { userId: "user_1" },
      body: { input: { prompt: "[VIDEO] a fox" } },
    });
  });

  it("trigger exits 8 when the receiver refuses (another secret), 6 when nothing listens, 3 without a secret", async () => {
    const r = await receiver(newSecret());
    const refused = await genstore(["trigger", "--url", r.url, "--json"], { REPLICATE_WEBHOOK_SECRET: newSecret() });
    expect(refused.code).toBe(8);
    expect(JSON.parse(refused.stdout)).toMatchObject({
      status: 401,
      body: { error: expect.stringMatching(/^bad signature/) },
    });
    expect(refused.stderr).toMatch(/error: The receiver answered 401 Unauthorized: it refused the delivery/);

    const port = await freePort();
    const unreachable = await genstore([
      "trigger",
      "--url",
      `http://127.0.0.1:${port}/api/webhooks/replicate`,
      "--secret",
      newSecret(),
    ]);
    expect(unreachable.code).toBe(6);
    expect(unreachable.stderr).toMatch(/Cannot reach the receiver .*ECONNREFUSED/);

    const noSecret = await genstore(["trigger", "--url", r.url]);
    expect(noSecret.code).toBe(3);
  });
});
