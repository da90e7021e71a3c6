// Start-up, as whole processes: `genstore --help`, and `genstore list --json` on an empty
// embedded database and on an empty PostgreSQL table, each the median of N runs (wall
// time, CPU time and peak RSS from /usr/bin/time), next to bare `node -e 0` in the same run.
// BENCH_BASELINE_BIN=<another checkout>/bin/genstore runs that binary too, for a before/after
// in one run. BENCH_PROFILE=1 adds where the CPU time of each list goes (V8's sampling
// profiler, grouped by package).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cleanEnv } from "../tests/support/cli.ts";
import { withBenchDatabase } from "./support.ts";

const runs = Math.max(7, Number(process.env.BENCH_RUNS ?? 11));
const bins: [string, string][] = [["genstore", path.resolve("bin/genstore")]];
if (process.env.BENCH_BASELINE_BIN) bins.push(["baseline", path.resolve(process.env.BENCH_BASELINE_BIN)]);

interface Sample {
  wall: number;
  cpu: number;
  rssMiB: number;
}

/** One whole process under /usr/bin/time: wall ms, CPU ms (user + system), peak RSS. */
function measure(args: string[], env: NodeJS.ProcessEnv): Sample {
  const start = performance.now();
  // /usr/bin/time writes its figures on stderr, the last line (the command's own stderr comes before).
  const run = spawnSync("/usr/bin/time", ["-f", "%U %S %M", process.execPath, ...args], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  if (run.status !== 0) throw new Error(`${args.join(" ")} exited ${run.status}: ${String(run.stderr)}`);
  const out = String(run.stderr);
  const wall = performance.now() - start;
  const [user, sys, rss] = out.trim().split("\n").at(-1)!.split(" ").map(Number) as [number, number, number];
  return { wall, cpu: (user + sys) * 1000, rssMiB: rss / 1024 };
}

function median(args: string[], env: NodeJS.ProcessEnv): Sample {
  measure(args, env);
  const samples = Array.from({ length: runs }, () => measure(args, env));
  const mid = (pick: (s: Sample) => number) => samples.map(pick).sort((a, b) => a - b)[Math.floor(runs / 2)]!;
  return { wall: mid((s) => s.wall), cpu: mid((s) => s.cpu), rssMiB: mid((s) => s.rssMiB) };
}

function line(name: string, s: Sample, target = ""): string {
  return `  ${name.padEnd(46)} ${s.wall.toFixed(0).padStart(5)} ms wall ${s.cpu.toFixed(0).padStart(5)} ms CPU ${s.rssMiB.toFixed(0).padStart(4)} MiB peak RSS${target ? `   (${target})` : ""}`;
}

/** Where one run's CPU time goes, by package (V8's sampling profiler). */
function profile(bin: string, env: NodeJS.ProcessEnv): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "genstore-prof-"));
  try {
    execFileSync(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${dir}`, bin, "list", "--json"], {
      env,
      stdio: "ignore",
    });
    const prof = JSON.parse(readFileSync(path.join(dir, readdirSync(dir)[0]!), "utf8")) as {
      nodes: { id: number; callFrame: { url: string; functionName: string } }[];
      samples: number[];
      timeDeltas: number[];
    };
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const totals = new Map<string, number>();
    prof.samples.forEach((id, i) => {
      const { url, functionName } = byId.get(id)!.callFrame;
      const where = url
        ? url.includes("node_modules/")
          ? url.replace(/.*node_modules\/((@[^/]+\/)?[^/]+).*/, "$1")
          : url.startsWith("node:")
            ? "node (module loading, runtime)"
            : url.startsWith("wasm://")
              ? "WebAssembly (PGlite's PostgreSQL)"
              : "genstore"
        : `(${functionName})`;
      totals.set(where, (totals.get(where) ?? 0) + prof.timeDeltas[i]! / 1000);
    });
    return [...totals]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([where, ms]) => `${where} ${ms.toFixed(0)} ms`)
      .join(", ");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await withBenchDatabase("startup", async ({ db, env: databaseEnv }) => {
  const home = mkdtempSync(path.join(os.tmpdir(), "genstore-bench-"));
  const onExit: (() => Promise<unknown>)[] = [];
  try {
    const embedded = cleanEnv({ GENSTORE_HOME: home });
    const postgres = cleanEnv({ GENSTORE_HOME: home, ...databaseEnv });
    console.log(
      `startup: whole processes, median of ${runs} (wall, CPU = user + system, peak RSS); ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`,
    );
    console.log(line("node -e 0 (reference)", median(["-e", "0"], embedded)));
    for (const [name, bin] of bins) {
      // The first run makes the embedded database; the medians are of the runs after it.
      execFileSync(process.execPath, [bin, "list", "--json"], { env: embedded, stdio: "ignore" });
      if (name === "baseline") {
        // Another version keeps its tables elsewhere: a schema of its own, migrated by it.
        const url = new URL(databaseEnv.DATABASE_URL!);
        const schema = `${url.searchParams.get("schema")}_baseline`;
        await db.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
        url.searchParams.set("schema", schema);
        Object.assign(postgres, { DATABASE_URL: url.toString(), GENSTORE_SCHEMA: `${schema}_gs` });
        execFileSync(process.execPath, [bin, "db", "migrate"], { env: postgres, stdio: "ignore" });
        onExit.push(() => db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
      }
      console.log(line(`${name} --help`, median([bin, "--help"], embedded), "target ≤ 300 ms"));
      console.log(
        line(
          `${name} list --json, embedded, empty`,
          median([bin, "list", "--json"], embedded),
          "target ≤ 1,000 ms, ≤ 200 MiB",
        ),
      );
      console.log(
        line(
          `${name} list --json, PostgreSQL, empty`,
          median([bin, "list", "--json"], postgres),
          "target ≤ 500 ms, ≤ 80 MiB",
        ),
      );
      if (process.env.BENCH_PROFILE) {
        console.log(`    where the CPU goes, embedded: ${profile(bin, embedded)}`);
        console.log(`    where the CPU goes, PostgreSQL: ${profile(bin, postgres)}`);
      }
      rmSync(path.join(home, "db"), { recursive: true, force: true });
    }
  } finally {
    for (const cleanup of onExit) await cleanup();
    rmSync(home, { recursive: true, force: true });
  }
});
