import os from "node:os";
import { defineConfig } from "vitest/config";
import LongestFirst from "./tests/support/sequencer.ts";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    globalSetup: ["tests/support/global-setup.ts"],
    // The suite must pass on a machine busy with other work: tests wait for conditions, and
    // these limits only stop a test that hangs.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: "forks",
    // At least two files at a time: most files wait on child processes, servers and the test
    // S3 server, so on a 2-core machine (where Vitest's default is one worker) a second
    // worker uses the idle core. Each file keeps to its own databases, buckets and ports.
    maxWorkers: Math.max(2, os.availableParallelism() - 1),
    sequence: { sequencer: LongestFirst },
  },
});
