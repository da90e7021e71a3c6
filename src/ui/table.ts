import Table from "cli-table3";
import { resolveOperation } from "../core/operation.ts";
import type { GenerationRecord } from "../core/generation-table.ts";
import type { Output } from "./output.ts";

export function renderTable(head: string[], rows: string[][], output: Output): string {
  const table = new Table({
    head: head.map((h) => output.stdoutColor.bold(h)),
    style: { head: [], border: [] },
    wordWrap: false,
  });
  table.push(...rows);
  return table.toString();
}

export function renderGenerationTable(rows: GenerationRecord[], output: Output): string {
  return renderTable(
    ["id", "created (UTC)", "user", "context", "status", "files", "prompt"],
    rows.map((row) => {
      const detected = resolveOperation(row);
      // A context read from the prompt (no operationType yet: run `genstore backfill`) is marked with *.
      const context = detected.detectedBy === "prompt-prefix" ? `${detected.storageContext}*` : detected.storageContext;
      return [
        row.id,
        row.createdAt.toISOString().slice(0, 16).replace("T", " "),
        row.userId,
        context,
        statusColor(row.status, output),
        String(row.storageKeys.length),
        truncate(row.prompt, 40),
      ];
    }),
    output,
  );
}

function statusColor(status: string, output: Output): string {
  if (status === "succeeded") return output.stdoutColor.green(status);
  if (status === "failed" || status === "aborted") return output.stdoutColor.red(status);
  if (status === "canceled") return output.stdoutColor.yellow(status);
  return status;
}

function truncate(text: string, max: number): string {
  const oneLine = text.replace(/\s+/g, " ");
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}
