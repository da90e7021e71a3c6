import { PassThrough } from "node:stream";
import { text } from "node:stream/consumers";
import { describe, expect, it, onTestFinished } from "vitest";
import { JsonArraySpool } from "../src/ui/json-spool.ts";

function spool(): JsonArraySpool {
  const made = new JsonArraySpool();
  onTestFinished(() => made.discard());
  return made;
}

async function document(s: JsonArraySpool, rest: Record<string, unknown>): Promise<string> {
  const out = new PassThrough();
  const written = text(out);
  await s.writeDocument(out, "decisions", rest);
  out.end();
  return written;
}

describe("JsonArraySpool (a --json array too long for memory)", () => {
  it("writes one JSON document: the spooled items under their key, then the rest", async () => {
    const s = spool();
    s.add({ action: "move", sourceKey: "u1/a.png" });
    s.add({ action: "orphan", sourceKey: "u9/b.png", size: 12n });
    const written = await document(s, { dryRun: true, listed: 2 });
    expect(JSON.parse(written)).toEqual({
      decisions: [
        { action: "move", sourceKey: "u1/a.png" },
        { action: "orphan", sourceKey: "u9/b.png", size: 12 },
      ],
      dryRun: true,
      listed: 2,
    });
    expect(written).toBe(
      '{\n  "decisions": [\n    {"action":"move","sourceKey":"u1/a.png"},\n    {"action":"orphan","sourceKey":"u9/b.png","size":12}\n  ],\n  "dryRun": true,\n  "listed": 2\n}\n',
    );
  });

  it.each([
    ["no items", {}, { decisions: [] }],
    ["no items and more keys", { listed: 0 }, { decisions: [], listed: 0 }],
  ])("writes a valid document with %s", async (_, rest, expected) => {
    expect(JSON.parse(await document(spool(), rest))).toEqual(expected);
  });

  it("keeps at most one write buffer in memory however many items it holds", async () => {
    const s = spool();
    const decision = (i: number) => ({
      action: "move",
      sourceKey: `u${i % 7}/img${i}.png`,
      targetKey: `generated/u/${i}.png`,
    });
    let most = 0;
    for (let i = 0; i < 200_000; i++) {
      s.add(decision(i));
      most = Math.max(most, s.buffered);
    }
    expect(most).toBeLessThan(80 * 1024);
    const parsed = JSON.parse(await document(s, { listed: 200_000 })) as { decisions: unknown[] };
    expect(parsed.decisions).toHaveLength(200_000);
    expect(parsed.decisions[199_999]).toEqual(decision(199_999));
  });
});
