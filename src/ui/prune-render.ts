import type { PruneResult } from "../jobs/prune.ts";
import { formatDuration, type Output } from "./output.ts";

// How `genstore db prune` shows its result: one line for people, one JSON document with --json.

export function renderPrune(result: PruneResult, output: Output): void {
  if (output.json) return output.printJson(result);
  output.print(pruneSummaryLine(result));
}

/** "Deleted 1,234 done webhook deliveries finished before 2026-11-23 12:00 UTC (older than 7d) in 3 batches; 2 failed kept." */
export function pruneSummaryLine(result: PruneResult): string {
  const n = (value: number) => value.toLocaleString("en-US");
  const deliveries = (value: number) => `${n(value)} done webhook deliver${value === 1 ? "y" : "ies"}`;
  const when = `finished before ${result.before.slice(0, 16).replace("T", " ")} UTC (older than ${formatDuration(result.olderThanMs / 1000)})`;
  const failed =
    result.failedKept > 0
      ? ` ${n(result.failedKept)} failed deliver${result.failedKept === 1 ? "y is" : "ies are"} kept for an operator.`
      : "";
  if (result.dryRun)
    return `Dry run: would delete ${deliveries(result.matched)} ${when}. Nothing was deleted.${failed}`;
  const batches = result.batches > 1 ? ` in ${n(result.batches)} batches` : "";
  return `Deleted ${deliveries(result.deleted)} ${when}${batches}.${failed}`;
}
