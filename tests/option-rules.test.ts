import { describe, expect, it } from "vitest";
import { z } from "zod";
import { wholeNumber } from "../src/commands/option-rules.ts";

// The range rule --concurrency, --port, --limit and --batch-size share.

describe("wholeNumber", () => {
  const rule = wholeNumber(z, 1, 1_000_000);
  const message = (value: string) => {
    const result = rule.safeParse(value);
    return result.success ? undefined : result.error.issues[0]!.message;
  };

  it("takes an option's text within the range as a number", () => {
    expect(rule.parse("1")).toBe(1);
    expect(rule.parse("1000000")).toBe(1_000_000);
  });

  it.each(["0", "1000001", "2.5", "eight", "-3"])("refuses %s with one wording", (value) => {
    expect(message(value)).toBe("must be a whole number from 1 to 1,000,000");
  });
});
