import { PartialFailure } from "../errors.ts";
import type { MigrateKeysEvent, MigrateKeysProgress, MigrateKeysResult } from "../jobs/migrate-keys.ts";
import { formatCounts } from "./format.ts";
import { JsonArraySpool } from "./json-spool.ts";
import { formatRate, type Output } from "./output.ts";

// How `genstore migrate-keys` shows its work. For people: a progress line on stderr, each
// decision (dry run) or failed and unusual move as a line on stdout as it happens, then the
// summary. With --json: one document on stdout once the run has succeeded, and nothing when
// it fails; a dry run's decisions are spooled to a temporary file meanwhile (there can be
// millions), so memory stays flat.

export interface MigrateKeysView {
  onEvent: (event: MigrateKeysEvent) => void;
  onProgress: (progress: MigrateKeysProgress) => void;
  /** Prints the result; throws PartialFailure (exit 7) when some objects failed. */
  finish: (result: MigrateKeysResult) => Promise<void>;
  /** Ends the progress line and removes the spool, however the run ended. */
  close: () => void;
}

export async function migrateKeysView(output: Output, options: { dryRun?: boolean }): Promise<MigrateKeysView> {
  const dryRun = options.dryRun === true;
  const spool = output.json && dryRun ? new JsonArraySpool() : undefined;
  const progress = await output.progress(dryRun ? "Planning…" : "Listing…");
  let finished = false;
  return {
    onEvent: (event) => {
      if (spool) {
        if (event.type === "plan")
          spool.add({ ...event.plan, ...(event.journalStep ? { journalStep: event.journalStep } : {}) });
        return;
      }
      if (dryRun || event.type === "failed" || event.plan.action !== "move") {
        const line = migrateKeysEventLine(event);
        if (line !== undefined) output.print(line);
      }
    },
    onProgress: (p) =>
      progress.update(
        `${dryRun ? "Planning" : "Moving"}: ${formatRate(p.examined, p.total, p.startedAt, "objects")}, ${p.moved.toLocaleString("en-US")} moved`,
      ),
    finish: async (result) => {
      finished = true;
      progress.done();
      if (spool) await output.printJsonDocument(spool, "decisions", { ...result });
      else if (output.json) output.printJson(result);
      else output.print(migrateKeysSummaryLine(result));
      if (result.failed > 0)
        throw new PartialFailure(
          `${result.failed.toLocaleString("en-US")} object${result.failed === 1 ? "" : "s"} could not be moved (listed above); nothing of them was lost.`,
        );
    },
    close: () => {
      if (!finished) progress.fail();
      spool?.discard();
    },
  };
}

/** The final line of a run, for people. */
export function migrateKeysSummaryLine(result: MigrateKeysResult): string {
  const n = (value: number) => value.toLocaleString("en-US");
  const plural = (value: number, word: string) => `${n(value)} ${word}${value === 1 ? "" : "s"}`;
  const { plan } = result;
  const left = [
    plan.orphans > 0
      ? `${plural(plan.orphans, "orphan")} left alone (no row references ${plan.orphans === 1 ? "it" : "them"}; --orphans-to <context> moves them)`
      : "",
    plan.unknown > 0 ? `${plural(plan.unknown, "unknown key")} reported` : "",
    plan.skipped > 0 ? `${n(plan.skipped)} already in the context layout` : "",
  ].filter(Boolean);
  const tail = left.length > 0 ? `; ${left.join("; ")}` : "";
  if (result.dryRun) {
    const moves =
      plan.moves === 0
        ? "nothing to move"
        : `would move ${plural(plan.moves, "object")} (${formatCounts(plan.byContext)})`;
    return `Dry run of ${plural(result.listed, "object")}: ${moves}${tail}. Nothing was changed.`;
  }
  const moved = `Moved ${plural(result.moved, "object")}${result.moved > 0 ? ` (${formatCounts(result.movedByContext)})` : ""}`;
  const extra = [
    result.resumed > 0 ? `${n(result.resumed)} continued from an earlier run` : "",
    result.alreadyDone > 0 ? `${n(result.alreadyDone)} already moved earlier` : "",
    result.keepSource ? "sources kept" : "",
    result.failed > 0 ? `${n(result.failed)} failed` : "",
  ].filter(Boolean);
  return `${moved}${extra.length > 0 ? ` [${extra.join(", ")}]` : ""} out of ${plural(result.listed, "object")} listed${tail}.`;
}

/** One line for an event: "move  u1/a.png → generated/u1/g1_0.png", "orphan  …", "failed  …". */
export function migrateKeysEventLine(event: MigrateKeysEvent): string | undefined {
  if (event.type === "failed")
    return `failed   ${event.sourceKey}${event.targetKey ? ` → ${event.targetKey}` : ""}: ${event.reason}`;
  const { plan } = event;
  switch (plan.action) {
    case "move":
      return `move     ${plan.sourceKey} → ${plan.targetKey}${plan.generationId === null ? " (orphan)" : ""}${event.journalStep ? ` (journal: ${event.journalStep})` : ""}`;
    case "orphan":
      return `orphan   ${plan.sourceKey}${plan.reason ? ` (${plan.reason})` : " (no row references it)"}`;
    case "unknown":
      return `unknown  ${plan.sourceKey} (${plan.reason})`;
    case "skip":
      return undefined;
  }
}
