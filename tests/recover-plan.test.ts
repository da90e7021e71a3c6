import { describe, expect, it } from "vitest";
import {
  predictionIdProblem,
  predictionsSince,
  recoverExitCode,
  recoverSummaryLine,
  splitOrphans,
  type ItemState,
  type StopReason,
} from "../src/core/recover-plan.ts";

describe("predictionIdProblem", () => {
  it.each([
    ["gm3qorzdhgbfurvjtvhg6dckhu", undefined],
    ["abc123", undefined],
    ["a".repeat(64), undefined],
    ["a".repeat(65), "is longer than 64 characters"],
    ["", "is empty"],
    ["../x", "may only contain lowercase letters and digits"],
    ["abc/def", "may only contain lowercase letters and digits"],
    ["abc def", "may only contain lowercase letters and digits"],
    ["abc%2f", "may only contain lowercase letters and digits"],
    ["abc\n", "may only contain lowercase letters and digits"],
    ["GM3QORZDHGBF", "has capital letters (Replicate ids are lowercase)"],
    ["abc-def", "may only contain lowercase letters and digits"],
  ])("%j → %s", (id, expected) => expect(predictionIdProblem(id)).toBe(expected));
});

describe("predictionsSince (one page, newest first)", () => {
  const since = new Date("2026-11-20T10:00:00Z");
  const p = (id: string, created_at: string | null) => ({ id, created_at });
  it.each([
    ["all newer: keep all, go on", [p("a", "2026-11-21T00:00:00Z"), p("b", "2026-11-20T10:00:00Z")], ["a", "b"], false],
    ["an older one ends the listing", [p("a", "2026-11-21T00:00:00Z"), p("b", "2026-11-19T23:59:59Z")], ["a"], true],
    ["all older", [p("a", "2026-11-01T00:00:00Z")], [], true],
    ["no created_at: kept (cannot be placed)", [p("a", null), p("b", "2026-11-22T00:00:00Z")], ["a", "b"], false],
    ["an empty page", [], [], false],
  ])("%s", (_name, page, keep, done) => {
    const result = predictionsSince(page, since);
    expect(result.keep.map((x) => x.id)).toEqual(keep);
    expect(result.done).toBe(done);
  });
});

describe("splitOrphans", () => {
  it("keeps listing order and splits by what the database has", () => {
    const result = splitOrphans([{ id: "a" }, { id: "b" }, { id: "c" }], new Set(["b"]));
    expect(result.orphans.map((x) => x.id)).toEqual(["a", "c"]);
    expect(result.present.map((x) => x.id)).toEqual(["b"]);
  });
});

describe("recoverExitCode", () => {
  const items = (...states: ItemState[]) => states.map((state) => ({ state }));
  it.each<[string, ItemState[], StopReason | undefined, number]>([
    ["nothing to do", [], undefined, 0],
    ["all stored or already stored", ["stored", "unchanged", "planned"], undefined, 0],
    ["still running is not a failure", ["pending", "stored"], undefined, 0],
    ["one unknown id among good ones", ["stored", "unknown", "stored"], undefined, 7],
    ["an expired output", ["expired"], undefined, 7],
    ["an orphan nobody owns", ["refused", "stored"], undefined, 7],
    ["Replicate kept throttling one", ["stored", "rate-limited", "unknown"], undefined, 6],
    ["the token was refused", ["skipped"], { kind: "replicate", message: "x" }, 6],
    ["the database went away", ["stored", "skipped"], { kind: "database", message: "x" }, 4],
    ["storage refused", ["failed"], { kind: "storage", message: "x" }, 5],
    ["Ctrl-C wins", ["unknown", "skipped"], { kind: "interrupted" }, 130],
  ])("%s → %i", (_name, states, stopped, code) => expect(recoverExitCode(items(...states), stopped)).toBe(code));
});

describe("recoverSummaryLine", () => {
  it.each<[ItemState[], boolean, string]>([
    [[], false, "0 predictions: nothing to recover."],
    [["stored"], false, "1 prediction: 1 stored."],
    [["unknown", "stored", "stored", "unchanged"], false, "4 predictions: 2 stored, 1 already stored, 1 unknown."],
    [["planned", "planned"], true, "Dry run: 2 predictions: 2 planned. Nothing was written."],
    [["pending", "skipped"], false, "2 predictions: 1 still running, 1 not attempted."],
  ])("%j → %s", (states, dryRun, line) =>
    expect(
      recoverSummaryLine(
        states.map((state) => ({ state })),
        { dryRun },
      ),
    ).toBe(line),
  );
});
