import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { wholeNumber } from "./option-rules.ts";
import { parseDateInput } from "../core/dates.ts";
import { DEFAULT_BATCH_SIZE, runBackfill, summaryLine } from "../jobs/backfill.ts";
import { formatRate } from "../ui/output.ts";

// `backfill`: src/jobs/backfill.ts does the work; this file turns flags into its input and
// renders its progress and result.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("backfill")
    .description(
      "Fill operationType/storageContext on old rows from their prompt prefixes (set-based, batched, resumable)",
    )
    .option("-u, --user <userId>", "only this user's generations")
    .option("--since <date>", "created at or after: ISO date/time, or a duration back from now (24h, 7d)")
    .option("--batch-size <n>", "rows per batch, each its own short transaction", String(DEFAULT_BATCH_SIZE))
    .option(
      "--force",
      "also rewrite rows that already have operationType, from their prompt (reports disagreements first)",
    )
    .option("--dry-run", "print how many rows of each operation type would be written; change nothing")
    .option("--json", "print one JSON document with the result and nothing else")
    .addHelpText(
      "after",
      `
Rows without operationType get it (and storageContext) from the prompt prefix: [EDITED],
[UPSCALED], [VIDEO] (case-sensitive, leading whitespace ignored), anything else is a
generation; metadata.detectedBy becomes "prompt-prefix". Ctrl-C stops between batches;
run the same command again to continue where it stopped.

Examples:
  $ genstore backfill --dry-run
  $ genstore backfill --user user_123 --since 30d
  $ genstore backfill --batch-size 5000 --json
  $ genstore backfill --force --dry-run     how many rows disagree with their prompt`,
    )
    .action(withContext(backfillAction, signal));
}

async function backfillAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) =>
    z.object({
      user: z.string().min(1).optional(),
      since: z
        .string()
        .optional()
        .refine((v) => v === undefined || parseDateInput(v), "must be an ISO date or a duration such as 24h or 7d"),
      batchSize: wholeNumber(z, 1, 1_000_000),
      force: z.boolean().optional(),
      dryRun: z.boolean().optional(),
      json: z.boolean().optional(),
    }),
  );
  const output = context.output({ json: input.json });
  context.throwIfInterrupted();
  const db = await context.database();
  const progress = await output.progress(input.dryRun ? "Counting rows…" : "Backfilling…");
  try {
    const result = await runBackfill(
      {
        userId: input.user,
        since: input.since === undefined ? undefined : parseDateInput(input.since),
        sinceText: input.since,
        force: input.force,
        dryRun: input.dryRun,
        batchSize: input.batchSize,
      },
      {
        db,
        signal: context.signal,
        onStart: (info) => {
          if (info.disagreements !== undefined) {
            const n = info.disagreements;
            const text = `${n.toLocaleString("en-US")} row${n === 1 ? "" : "s"} in scope ${n === 1 ? "has" : "have"} an operationType that differs from ${n === 1 ? "its" : "their"} prompt${input.dryRun ? "" : "; rewriting every row in scope from the prompt"}.`;
            output.info(text);
          }
          if (info.resumedFrom !== undefined)
            output.info(`Continuing after ${info.resumedFrom} (where the previous run stopped).`);
          if (!input.dryRun) progress.update(`Backfilling: ${formatRate(0, info.total, Date.now(), "rows")}`);
        },
        onProgress: (p) =>
          progress.update(`Backfilling: ${formatRate(p.updated, p.total, p.startedAt, "rows")} (batch ${p.batches})`),
      },
    );
    progress.done();
    if (input.json) output.printJson(result);
    else output.print(summaryLine(result));
  } catch (error) {
    progress.fail();
    throw error;
  }
}
