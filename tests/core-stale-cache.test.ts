import { describe, expect, it } from "vitest";
import { createStaleCache, type StaleCacheOptions } from "../src/core/stale-cache.ts";

/** A loader whose loads the test finishes by hand, and a clock the test moves. */
function harness(options: Partial<StaleCacheOptions> = {}) {
  let clock = 1_000;
  const pending: { key: string; resolve: (value: string) => void; reject: (error: Error) => void }[] = [];
  const errors: string[] = [];
  let loads = 0;
  const cache = createStaleCache<string>(
    (key) =>
      new Promise<string>((resolve, reject) => {
        loads++;
        pending.push({ key, resolve, reject });
      }),
    {
      freshMs: 10_000,
      maxStaleMs: 60_000,
      maxEntries: 10,
      now: () => clock,
      onBackgroundError: (key, error) => errors.push(`${key}: ${(error as Error).message}`),
      ...options,
    },
  );
  /** Lets the cache's own promise callbacks run. */
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return {
    cache,
    errors,
    loads: () => loads,
    pending,
    advance: (ms: number) => (clock += ms),
    /** Finishes the oldest load still open. */
    finish: async (value: string) => {
      pending.shift()!.resolve(value);
      await settle();
    },
    fail: async (message: string) => {
      pending.shift()!.reject(new Error(message));
      await settle();
    },
    settle,
  };
}

describe("createStaleCache", () => {
  it("loads once and serves the value while it is fresh", async () => {
    const h = harness();
    const first = h.cache.get("all");
    const second = h.cache.get("all");
    await h.settle();
    expect(h.loads()).toBe(1);
    await h.finish("100 rows");
    expect(await first).toEqual({ value: "100 rows", computedAt: 1_000, source: "loaded" });
    expect(await second).toEqual({ value: "100 rows", computedAt: 1_000, source: "loaded" });
    h.advance(9_999);
    expect(await h.cache.get("all")).toEqual({ value: "100 rows", computedAt: 1_000, source: "hit" });
    expect(h.loads()).toBe(1);
  });

  it("serves a stale value at once while one new load runs, then the new value", async () => {
    const h = harness();
    const first = h.cache.get("all");
    await h.finish("100 rows");
    await first;
    h.advance(10_000);
    expect(await h.cache.get("all")).toMatchObject({ value: "100 rows", source: "stale" });
    expect(await h.cache.get("all")).toMatchObject({ value: "100 rows", source: "stale" });
    expect(h.loads()).toBe(2);
    await h.finish("101 rows");
    expect(await h.cache.get("all")).toEqual({ value: "101 rows", computedAt: 11_000, source: "hit" });
  });

  it("waits for a new load once the value is older than maxStaleMs", async () => {
    const h = harness();
    const first = h.cache.get("all");
    await h.finish("100 rows");
    await first;
    h.advance(60_001);
    const next = h.cache.get("all");
    await h.settle();
    expect(h.loads()).toBe(2);
    await h.finish("150 rows");
    expect(await next).toMatchObject({ value: "150 rows", source: "loaded" });
  });

  it("with freshMs 0 loads for every ask, sharing a load between asks at once", async () => {
    const h = harness({ freshMs: 0, maxStaleMs: 0 });
    const [a, b] = [h.cache.get("all"), h.cache.get("all")];
    await h.settle();
    await h.finish("1");
    expect([(await a).value, (await b).value]).toEqual(["1", "1"]);
    const c = h.cache.get("all");
    await h.settle();
    expect(h.loads()).toBe(2);
    await h.finish("2");
    expect(await c).toMatchObject({ value: "2", source: "loaded" });
  });

  it("keeps the old value when a background load fails, says so once, and tries again at the next ask", async () => {
    const h = harness();
    const first = h.cache.get("all");
    await h.finish("100 rows");
    await first;
    h.advance(20_000);
    await h.cache.get("all");
    await h.cache.get("all");
    await h.fail("connection refused");
    expect(h.errors).toEqual(["all: connection refused"]);
    expect(await h.cache.get("all")).toMatchObject({ value: "100 rows", source: "stale" });
    expect(h.loads()).toBe(3);
  });

  it("gives a failed load's error to everyone waiting for it and keeps nothing", async () => {
    const h = harness();
    const [a, b] = [h.cache.get("all"), h.cache.get("all")];
    const outcomes = Promise.allSettled([a, b]);
    await h.settle();
    await h.fail("timeout");
    expect((await outcomes).map((o) => o.status === "rejected" && (o.reason as Error).message)).toEqual([
      "timeout",
      "timeout",
    ]);
    const again = h.cache.get("all");
    await h.settle();
    expect(h.loads()).toBe(2);
    await h.finish("ok");
    expect((await again).value).toBe("ok");
  });

  it("takes a loader that throws as one that rejects", async () => {
    const errors: string[] = [];
    let fail = false;
    let clock = 0;
    const cache = createStaleCache<string>(
      (key) => {
        if (fail) throw new Error(`no ${key}`);
        return Promise.resolve("ok");
      },
      {
        freshMs: 10,
        maxStaleMs: 100,
        maxEntries: 5,
        now: () => clock,
        onBackgroundError: (_k, e) => errors.push(String(e)),
      },
    );
    expect((await cache.get("a")).value).toBe("ok");
    fail = true;
    clock = 50;
    expect(await cache.get("a")).toMatchObject({ value: "ok", source: "stale" });
    await cache.idle();
    expect(errors).toEqual(["Error: no a"]);
    await expect(cache.get("b")).rejects.toThrow("no b");
  });

  it("keeps maxEntries keys, dropping the least recently asked", async () => {
    const h = harness({ maxEntries: 2 });
    for (const key of ["a", "b"]) {
      const got = h.cache.get(key);
      await h.finish(key);
      await got;
    }
    await h.cache.get("a"); // a is now the most recently asked
    const c = h.cache.get("c");
    await h.finish("c");
    await c;
    expect((await h.cache.get("a")).source).toBe("hit");
    expect(h.loads()).toBe(3);
    void h.cache.get("b"); // b was dropped: it loads again
    await h.settle();
    expect(h.loads()).toBe(4);
    expect(h.pending.map((p) => p.key)).toEqual(["b"]);
  });

  it("idle() waits for loads in the background", async () => {
    const h = harness();
    const first = h.cache.get("all");
    await h.finish("1");
    await first;
    h.advance(15_000);
    await h.cache.get("all");
    let idle = false;
    const waiting = h.cache.idle().then(() => (idle = true));
    await h.settle();
    expect(idle).toBe(false);
    await h.finish("2");
    await waiting;
    expect(idle).toBe(true);
  });
});
