import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { DEFAULT_RETENTION, RETENTION_VARIABLE, retentionMs, runPrune } from "../jobs/prune.ts";
import { renderPrune } from "../ui/prune-render.ts";

// `db prune`: deletes done webhook deliveries older than the retention, on demand (every
// serve-webhook also does it hourly). A subcommand of `db` (src/commands/db.ts registers it).

export function registerPrune(db: Command, signal: AbortSignal): void {
  db.command("prune")
    .description("Delete done webhook deliveries older than the retention (failed ones are kept)")
    .option(
      "--older-than <duration>",
      `age of the done deliveries to delete: 7d, 36h, 2w (env ${RETENTION_VARIABLE}, default ${DEFAULT_RETENTION})`,
    )
    .option("--dry-run", "count what would be deleted; delete nothing")
    .option("--json", "print one JSON document with the result and nothing else")
    .addHelpText(
      "after",
      `
Deletes in batches of 500 rows with a pause between, so receivers on the same database
keep working; Ctrl-C stops between batches (run it again for the rest).

Examples:
  $ genstore db prune --dry-run
  $ genstore db prune --older-than 30d --json`,
    )
    .action(withContext(pruneAction, signal));
}

async function pruneAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) =>
    z.object({ olderThan: z.string().optional(), dryRun: z.boolean().optional(), json: z.boolean().optional() }),
  );
  const output = context.output({ json: input.json });
  context.config(); // reads .env, where the retention may be set
  const olderThanMs = retentionMs({ name: "--older-than", value: input.olderThan });
  const db = await context.database();
  const progress = await output.progress(input.dryRun ? "Counting…" : "Deleting…");
  const result = await runPrune(
    { olderThanMs, dryRun: input.dryRun },
    { db, signal: context.signal, onProgress: (p) => progress.update(`Deleted ${p.deleted.toLocaleString("en-US")}…`) },
  ).finally(() => progress.done());
  renderPrune(result, output);
}
