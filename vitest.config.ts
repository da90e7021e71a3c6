import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    globalSetup: ["tests/support/global-setup.ts"],
    // The suite must pass on a machine busy with other work: tests wait for conditions, and
    // these limits only stop a test that hangs. Workers: Vitest's default for the machine.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: "forks",
  },
});
