import { isFailedState } from "../core/recover-plan.ts";
import { ExitCode, Interrupted, PartialFailure, UserError } from "../errors.ts";
import type { RetryEvent } from "../replicate/client.ts";
import type { Output, Progress } from "./output.ts";
import { formatDuration } from "./output.ts";
import { renderTable } from "./table.ts";
import type { RecoverEvent, RecoverItem, RecoverResult } from "../jobs/recover.ts";

// How `genstore recover` shows its work: a progress line and one line per failure on stderr
// while it runs, then a table and the summary on stdout (or one JSON document), and the
// error that carries the exit code.

export function reportEvent(output: Output, progress: Progress): (event: RecoverEvent) => void {
  return (event) => {
    if (event.type === "start" && event.withoutReplicateId) {
      const n = event.withoutReplicateId;
      output.warn(
        `${n} row${n === 1 ? " is" : "s are"} starting/processing without a replicateId: nothing to poll ${n === 1 ? "it" : "them"} by (genstore list --status starting processing).`,
      );
    }
    if (event.type === "listed")
      progress.update(`Listing Replicate's predictions: ${event.listed} listed, ${event.orphans} not in the database…`);
    if (event.type === "item") {
      progress.update(`Recovering: ${event.done}/${event.total} predictions…`);
      if (isFailedState(event.item.state))
        output.info(
          `${output.stderrColor.red("✖")} ${event.item.predictionId}: ${event.item.message ?? event.item.state}`,
        );
      for (const warning of event.item.warnings) output.warn(`${event.item.predictionId}: ${warning}`);
    }
    if (event.type === "waiting") {
      const n = event.pending;
      const text = `Waiting ${formatDuration(event.intervalMs / 1000)}: ${n} prediction${n === 1 ? " is" : "s are"} still running (round ${event.round}; Ctrl-C stops)…`;
      // Without a terminal there is no progress line: a log (systemd, CI) gets one line a round.
      if (output.interactive) progress.update(text);
      else output.info(text);
    }
  };
}

export function reportRetry(output: Output): (event: RetryEvent) => void {
  return (e) =>
    output.info(
      `Replicate answered ${e.reason} for ${e.what}; retrying in ${formatDuration(e.delayMs / 1000)} (attempt ${e.attempt + 1}).`,
    );
}

export function renderRecover(result: RecoverResult, output: Output): void {
  if (output.json) {
    output.printJson(result);
    return;
  }
  if (result.listed !== undefined)
    output.info(
      `Replicate listed ${result.listed} prediction${result.listed === 1 ? "" : "s"} in the window; ${result.present} already in the database.`,
    );
  if (result.items.length > 0) {
    output.print(
      renderTable(
        ["prediction", "status", "result", "user", "files", "stored in / reason"],
        result.items.map((item) => [
          item.predictionId,
          item.status ?? "-",
          stateLabel(item, output),
          item.userId ?? "-",
          String(item.stored.length + item.planned.length + item.alreadyStored.length),
          where(item),
        ]),
        output,
      ),
    );
  }
  output.print(result.summary);
}

/** The error that ends a run that was not all fine (its message goes to stderr; the exit code is the run's). */
export function recoverError(result: RecoverResult): UserError | undefined {
  const failed = result.items.filter((i) => isFailedState(i.state)).length;
  switch (result.exitCode) {
    case ExitCode.ok:
      return undefined;
    case ExitCode.interrupted:
      return new Interrupted(
        "Interrupted.",
        "Run the same command again: what was stored stays stored and is not copied twice.",
      );
    case ExitCode.partial:
      return new PartialFailure(`${failed} of ${result.items.length} predictions failed (see the messages above).`);
    default: {
      if (result.stopped && result.stopped.kind !== "interrupted") {
        return new UserError(result.stopped.message, {
          hint: result.stopped.hint,
          exitCode: result.exitCode as ExitCode,
        });
      }
      const throttled = result.items.filter((i) => i.state === "rate-limited").length;
      return new UserError(
        `The Replicate API kept throttling ${throttled} prediction${throttled === 1 ? "" : "s"}; ${failed} of ${result.items.length} failed.`,
        {
          hint: "Wait a minute and run the same command again, or lower --concurrency.",
          exitCode: result.exitCode as ExitCode,
        },
      );
    }
  }
}

function stateLabel(item: RecoverItem, output: Output): string {
  const planned = item.outcome === "created" ? "would create" : "would update";
  const label =
    item.state === "unchanged"
      ? "already stored"
      : item.state === "pending"
        ? "still running"
        : item.state === "planned"
          ? planned
          : item.state;
  if (isFailedState(item.state)) return output.stdoutColor.red(label);
  if (item.state === "stored" || item.state === "unchanged") return output.stdoutColor.green(label);
  return label;
}

function where(item: RecoverItem): string {
  if (item.message && (isFailedState(item.state) || item.state === "skipped")) return item.message;
  const keys = [...item.stored, ...item.planned, ...item.alreadyStored];
  const key = keys.find((k) => !k.startsWith("thumbnails/")) ?? keys[0];
  if (!key) return item.state === "pending" ? "nothing yet" : "-";
  return keys.length > 1 ? `${key} (+${keys.length - 1} more)` : key;
}
