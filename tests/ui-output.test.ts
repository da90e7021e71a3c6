import { PassThrough } from "node:stream";
import { text } from "node:stream/consumers";
import { describe, expect, it } from "vitest";
import { Output, hasUsableWidth } from "../src/ui/output.ts";

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
