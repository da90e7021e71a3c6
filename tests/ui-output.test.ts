import { PassThrough } from "node:stream";
import { text } from "node:stream/consumers";
import { describe, expect, it } from "vitest";
import { formatDuration, Output, hasUsableWidth } from "../src/ui/output.ts";
import { renderGenerationTable } from "../src/ui/table.ts";

/** A stream that says it is a terminal of the given width, collecting what is written. */
function terminal(columns: number | undefined) {
  const cursor = () => true;
  const stream = Object.assign(new PassThrough(), {
    isTTY: true,
    columns,
    cursorTo: cursor,
    moveCursor: cursor,
    clearLine: cursor,
  });
  return stream as unknown as NodeJS.WriteStream & PassThrough;
}

describe("progress on a terminal", () => {
  it.each([
    [undefined, true],
    [80, true],
    [1, true],
    [0, false],
    [-1, false],
    [Number.NaN, false],
  ])("a terminal of %s columns has a usable width: %s", (columns, usable) => {
    expect(hasUsableWidth(terminal(columns))).toBe(usable);
  });

  it("draws no spinner on a terminal that reports 0 columns, and still prints the final message", async () => {
    const stderr = terminal(0);
    const output = new Output({ stderr, stdout: new PassThrough(), env: {} });
    expect(output.interactive).toBe(true);
    const progress = await output.progress("Listing…");
    progress.update("Moving: 10 objects");
    progress.done("Finished");
    stderr.end();
    expect(await text(stderr)).toBe("Finished\n");
  });

  it("spins on a terminal with a width", async () => {
    const stderr = terminal(80);
    const output = new Output({ stderr, stdout: new PassThrough(), env: {} });
    const progress = await output.progress("Listing…");
    progress.update("Moving: 10 objects");
    progress.done("Finished");
    stderr.end();
    expect(await text(stderr)).toContain("Finished");
  });
});

/** A stream that is (or is not) a terminal, collecting what is written. */
function stream(tty: boolean) {
  return tty ? terminal(80) : (new PassThrough() as unknown as NodeJS.WriteStream & PassThrough);
}

const ANSI = { test: (text: string) => text.includes("\x1b[") };

describe("colour follows the stream it is written to", () => {
  it.each([
    // stdout tty, stderr tty, env, --no-color → stdout coloured, stderr coloured
    ["`genstore list > out.txt` from a terminal", false, true, {}, undefined, false, true],
    ["`genstore list 2> err.txt` from a terminal", true, false, {}, undefined, true, false],
    ["both on a terminal", true, true, {}, undefined, true, true],
    ["both redirected", false, false, {}, undefined, false, false],
    ["NO_COLOR on a terminal", true, true, { NO_COLOR: "1" }, undefined, false, false],
    ["an empty NO_COLOR is not set", true, true, { NO_COLOR: "" }, undefined, true, true],
    ["--no-color on a terminal", true, true, {}, false, false, false],
    ["FORCE_COLOR into files", false, false, { FORCE_COLOR: "1" }, undefined, true, true],
    ["FORCE_COLOR=0 on a terminal", true, true, { FORCE_COLOR: "0" }, undefined, false, false],
    ["NO_COLOR wins over FORCE_COLOR", false, false, { NO_COLOR: "1", FORCE_COLOR: "1" }, undefined, false, false],
    ["--no-color wins over FORCE_COLOR", true, true, { FORCE_COLOR: "3" }, false, false, false],
    ["TERM=dumb on a terminal", true, true, { TERM: "dumb" }, undefined, false, false],
  ] as const)("%s", async (_, outTTY, errTTY, env, color, outColoured, errColoured) => {
    const stdout = stream(outTTY);
    const stderr = stream(errTTY);
    const output = new Output({ stdout, stderr, env, color });
    output.print(renderGenerationTable([row], output));
    output.error("something failed", "a hint");
    stdout.end();
    stderr.end();
    const [out, err] = await Promise.all([text(stdout), text(stderr)]);
    expect(out).toContain("succeeded");
    expect(ANSI.test(out), `stdout: ${JSON.stringify(out.slice(0, 80))}`).toBe(outColoured);
    expect(ANSI.test(err), `stderr: ${JSON.stringify(err)}`).toBe(errColoured);
  });
});

const row = {
  id: "g1",
  userId: "u1",
  prompt: "a fox",
  status: "succeeded",
  replicateId: "abc",
  imageUrls: [],
  storageProvider: "local",
  storageBucket: "/tmp",
  storageKeys: [],
  operationType: "generation",
  storageContext: "generated",
  metadata: {},
  createdAt: new Date("2026-11-30T12:00:00Z"),
  updatedAt: new Date("2026-11-30T12:00:00Z"),
  completedAt: null,
  error: null,
};

describe("formatDuration", () => {
  it.each([
    [0.2, "1s"],
    [45, "45s"],
    [125, "2m 05s"],
    [3 * 3600 + 20 * 60, "3h 20m"],
    [36 * 3600, "36h 00m"],
    [7 * 86_400, "7d 00h"],
    [14 * 86_400 + 5 * 3600, "14d 05h"],
  ])("%d s → %s", (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });
});
