import { randomBytes, webcrypto } from "node:crypto";
import { validateWebhook } from "replicate";
import { Webhook as SvixWebhook } from "svix";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../src/errors.ts";
import { signWebhook, verifyWebhook } from "../src/webhook/verify.ts";

const newSecret = () => `whsec_${randomBytes(24).toString("base64")}`;
const secret = newSecret();
const id = "msg_2mYxZ0abcDEF";
const body = JSON.stringify({
  id: "p1abc",
  status: "succeeded",
  output: ["https://replicate.delivery/x/out-0.png"],
  logs: "ünïcödé ✓",
});

function headersFor(signature: string, date: Date, webhookId = id): Record<string, string> {
  return {
    "webhook-id": webhookId,
    "webhook-timestamp": String(Math.floor(date.getTime() / 1000)),
    "webhook-signature": signature,
  };
}

async function replicateAccepts(input: { id: string; date: Date; signature: string; body: string; secret: string }) {
  return validateWebhook(
    {
      id: input.id,
      timestamp: String(Math.floor(input.date.getTime() / 1000)),
      signature: input.signature,
      body: input.body,
      secret: input.secret,
    },
    webcrypto as unknown as Crypto,
  );
}

function flipOneByte(text: string): string {
  const index = text.indexOf("succeeded");
  return `${text.slice(0, index)}S${text.slice(index + 1)}`;
}

describe("verifyWebhook agrees with svix and replicate's validateWebhook", () => {
  it("accepts a body signed by svix; replicate agrees", async () => {
    const date = new Date();
    const signature = new SvixWebhook(secret).sign(id, date, body);
    const result = verifyWebhook({ body, headers: headersFor(signature, date), secret });
    expect(result).toEqual({ ok: true, webhookId: id, timestamp: new Date(Math.floor(date.getTime() / 1000) * 1000) });
    expect(await replicateAccepts({ id, date, signature, body, secret })).toBe(true);
  });

  it("rejects a one-byte body change; replicate agrees", async () => {
    const date = new Date();
    const signature = new SvixWebhook(secret).sign(id, date, body);
    const changed = flipOneByte(body);
    expect(Buffer.byteLength(changed)).toBe(Buffer.byteLength(body));
    const result = verifyWebhook({ body: changed, headers: headersFor(signature, date), secret });
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.status).toBe(401);
      expect(result.reason).toMatch(/^bad signature: none of 1 v1 signature match/);
      expect(result.reason).not.toContain("\n");
    }
    expect(await replicateAccepts({ id, date, signature, body: changed, secret })).toBe(false);
  });

  it("signWebhook output is accepted by replicate's validateWebhook, svix's verify and verifyWebhook", async () => {
    const date = new Date();
    const signature = signWebhook({ id, timestamp: date, body, secret });
    expect(signature).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(signature).toBe(new SvixWebhook(secret).sign(id, date, body));
    expect(await replicateAccepts({ id, date, signature, body, secret })).toBe(true);
    expect(() => new SvixWebhook(secret).verify(body, headersFor(signature, date))).not.toThrow();
    expect(verifyWebhook({ body, headers: headersFor(signature, date), secret }).ok).toBe(true);
    // Unix seconds work as well as a Date.
    expect(signWebhook({ id, timestamp: Math.floor(date.getTime() / 1000), body, secret })).toBe(signature);
  });

  it("a wrong secret is rejected; replicate agrees", async () => {
    const date = new Date();
    const signature = signWebhook({ id, timestamp: date, body, secret: newSecret() });
    const result = verifyWebhook({ body, headers: headersFor(signature, date), secret });
    expect(result).toMatchObject({ ok: false, status: 401, reason: expect.stringMatching(/^bad signature/) });
    expect(await replicateAccepts({ id, date, signature, body, secret })).toBe(false);
  });
});

describe("verifyWebhook", () => {
  it("accepts several space-separated signatures during a key rotation when one is valid", async () => {
    const date = new Date();
    const oldSecret = newSecret();
    const valid = signWebhook({ id, timestamp: date, body, secret });
    const stale = signWebhook({ id, timestamp: date, body, secret: oldSecret });
    for (const signature of [`${stale} ${valid}`, `${valid} ${stale}`, `v2,abc ${stale} ${valid}`]) {
      expect(verifyWebhook({ body, headers: headersFor(signature, date), secret }).ok).toBe(true);
      expect(await replicateAccepts({ id, date, signature, body, secret })).toBe(true);
    }
    const none = verifyWebhook({ body, headers: headersFor(`${stale} ${stale}`, date), secret: newSecret() });
    expect(none).toMatchObject({
      ok: false,
      status: 401,
      reason: expect.stringMatching(/^bad signature: none of 2 v1 signatures/),
    });
  });

  it("rejects a timestamp 6 minutes old with 401 and says how far off", () => {
    const date = new Date(Date.now() - 6 * 60_000);
    const signature = new SvixWebhook(secret).sign(id, date, body);
    const result = verifyWebhook({ body, headers: headersFor(signature, date), secret });
    expect(result).toMatchObject({ ok: false, status: 401 });
    if (!result.ok) expect(result.reason).toMatch(/^stale timestamp: 6m \d+s in the past \(tolerance 300s\)$/);
  });

  it("rejects a timestamp 6 minutes ahead with 401 and says how far off", () => {
    const date = new Date(Date.now() + 6 * 60_000);
    const signature = new SvixWebhook(secret).sign(id, date, body);
    const result = verifyWebhook({ body, headers: headersFor(signature, date), secret });
    expect(result).toMatchObject({ ok: false, status: 401 });
    if (!result.ok)
      expect(result.reason).toMatch(/^stale timestamp: (5m 59s|6m \d+s) in the future \(tolerance 300s\)$/);
  });

  it("honours an injected now and toleranceSeconds (the library's real-clock check does not interfere)", () => {
    const signedAt = new Date("2024-01-02T03:04:05Z");
    const signature = signWebhook({ id, timestamp: signedAt, body, secret });
    const headers = headersFor(signature, signedAt);
    expect(verifyWebhook({ body, headers, secret, now: new Date(signedAt.getTime() + 299_000) }).ok).toBe(true);
    expect(verifyWebhook({ body, headers, secret, now: new Date(signedAt.getTime() + 301_000) })).toEqual({
      ok: false,
      status: 401,
      reason: "stale timestamp: 5m 1s in the past (tolerance 300s)",
    });
    expect(
      verifyWebhook({ body, headers, secret, now: new Date(signedAt.getTime() - 61_000), toleranceSeconds: 60 }),
    ).toEqual({
      ok: false,
      status: 401,
      reason: "stale timestamp: 61s in the future (tolerance 60s)",
    });
    // Against the real clock (no `now`) this 2024 delivery is stale.
    expect(verifyWebhook({ body, headers, secret })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^stale timestamp: \d+d in the past/),
    });
    // A body change is still caught when the clock is injected.
    expect(verifyWebhook({ body: flipOneByte(body), headers, secret, now: signedAt }).ok).toBe(false);
  });

  it.each([["webhook-id"], ["webhook-timestamp"], ["webhook-signature"]])("rejects a delivery without %s", (name) => {
    const date = new Date();
    const headers: Record<string, string> = headersFor(signWebhook({ id, timestamp: date, body, secret }), date);
    delete headers[name];
    expect(verifyWebhook({ body, headers, secret })).toEqual({
      ok: false,
      status: 401,
      reason: `missing webhook headers: ${name}`,
    });
    // Empty counts as missing too.
    expect(verifyWebhook({ body, headers: { ...headers, [name]: "" }, secret })).toMatchObject({
      ok: false,
      status: 401,
    });
  });

  it("names every missing header in one line", () => {
    expect(verifyWebhook({ body, headers: {}, secret })).toEqual({
      ok: false,
      status: 401,
      reason: "missing webhook headers: webhook-id, webhook-timestamp, webhook-signature",
    });
  });

  it("reads header names case-insensitively from a record, a Headers object and Node's array values", () => {
    const date = new Date();
    const signature = signWebhook({ id, timestamp: date, body, secret });
    const plain = headersFor(signature, date);
    const shouty = Object.fromEntries(Object.entries(plain).map(([key, value]) => [key.toUpperCase(), value]));
    const mixed = {
      "Webhook-Id": plain["webhook-id"],
      "Webhook-Timestamp": [plain["webhook-timestamp"]!],
      "WEBHOOK-signature": [signWebhook({ id, timestamp: date, body, secret: newSecret() }), signature],
    };
    for (const headers of [shouty, mixed, new Headers(shouty)]) {
      expect(verifyWebhook({ body, headers, secret })).toMatchObject({ ok: true, webhookId: id });
    }
  });

  it("rejects a timestamp that is not Unix seconds", () => {
    const date = new Date();
    const headers = {
      ...headersFor(signWebhook({ id, timestamp: date, body, secret }), date),
      "webhook-timestamp": "12abc",
    };
    expect(verifyWebhook({ body, headers, secret })).toEqual({
      ok: false,
      status: 401,
      reason: 'invalid webhook-timestamp header "12abc": expected Unix seconds',
    });
  });

  it("throws a ConfigError (not a 401) for an unusable secret", () => {
    const headers = headersFor("v1,abc", new Date());
    expect(() => verifyWebhook({ body, headers, secret: "" })).toThrow(ConfigError);
    expect(() => verifyWebhook({ body, headers, secret: "whsec_%%%not-base64" })).toThrow(ConfigError);
  });
});
