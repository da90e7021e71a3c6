// Start-up: `genstore --help` and `genstore list --json` on an empty embedded database,
// median of N runs, next to bare `node -e 0` measured in the same run.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const runs = Number(process.env.BENCH_RUNS ?? 15);
const bin = path.resolve("bin/genstore");
const home = mkdtempSync(path.join(os.tmpdir(), "genstore-bench-"));
const env = { ...process.env, GENSTORE_HOME: home, NO_COLOR: "1" };

function median(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    execFileSync(process.execPath, args, { env, stdio: "ignore" });
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

try {
  const first = performance.now();
  execFileSync(process.execPath, [bin, "list", "--json"], { env, stdio: "ignore" });
  const firstRun = performance.now() - first;
  const node = median(["-e", "0"]);
  const help = median([bin, "--help"]);
  const list = median([bin, "list", "--json"]);
  console.log(`startup (median of ${runs}):`);
  console.log(`  node -e 0                 ${node.toFixed(0)} ms (reference)`);
  console.log(`  genstore --help           ${help.toFixed(0)} ms  (target < 300 ms)`);
  console.log(`  genstore list --json      ${list.toFixed(0)} ms  (empty embedded database; target < 1000 ms)`);
  console.log(`  first run (creates db)    ${firstRun.toFixed(0)} ms`);
} finally {
  rmSync(home, { recursive: true, force: true });
}
