import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { wholeNumber } from "./option-rules.ts";
import { parseDateInput, parseDuration } from "../core/dates.ts";
import { checkRecoverInput, runRecover } from "../jobs/recover.ts";
import { ingestPrediction } from "../pipeline/ingest.ts";
import { replicateClientFromConfig } from "../replicate/client.ts";
import * as render from "../ui/recover-render.ts";

// `recover`: src/jobs/recover.ts does the work, src/ui/recover-render.ts shows it.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("recover")
    .description(
      "Fetch predictions from Replicate, store their outputs in their context folders, create or repair their rows",
    )
    .argument("[predictionId...]", "Replicate prediction ids (lowercase letters and digits)")
    .option("--pending", "poll every row still starting/processing and reconcile it (the polling fallback)")
    .option(
      "--since <date>",
      "recover what Replicate created since then that the database lacks: ISO date/time, or 24h, 7d",
    )
    .option("--watch", "keep polling predictions that are still running until all are final (Ctrl-C stops)")
    .option("--interval <duration>", "time between --watch polls: 5s, 500ms, 1m", "5s")
    .option("--dry-run", "fetch and show what would be done; write nothing")
    .option("-u, --user <userId>", "owner of orphans whose input has no user_id/userId")
    .option("-c, --concurrency <n>", "predictions handled at once (1-32)", "4")
    .option("--json", "print one JSON document with every item and the summary, and nothing else")
    .addHelpText(
      "after",
      `
Examples:
  $ genstore recover gm3qorzdhgbfurvjtvhg6dckhu          copy one prediction's outputs, fix its row
  $ genstore recover --pending --watch --interval 10s   poll running rows until they finish
  $ genstore recover --since 24h --user user_123 --dry-run

Exit codes: 0 all fine (still-running predictions included), 6 Replicate refused the token,
is unreachable or kept throttling, 7 some predictions failed (unknown id, expired output,
orphan without owner), 8 unsafe id or --user refused, 130 interrupted.`,
    )
    .action(withContext(recoverAction, signal));
}

async function recoverAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const duration = (v: string) => parseDuration(v, { bareUnit: "s" }) ?? 0;
  const input = context.parse(options, (z) =>
    z
      .object({
        args: z.array(z.union([z.string(), z.array(z.string())])).optional(),
        pending: z.boolean().optional(),
        since: z
          .string()
          .optional()
          .refine((v) => v === undefined || parseDateInput(v), "must be an ISO date or a duration such as 24h or 7d"),
        watch: z.boolean().optional(),
        interval: z.string().refine((v) => duration(v) > 0, "must be a duration such as 5s, 500ms or 1m"),
        dryRun: z.boolean().optional(),
        user: z.string().optional(),
        concurrency: wholeNumber(z, 1, 32),
        json: z.boolean().optional(),
      })
      .transform(({ args, since, interval, ...rest }) => ({
        ...rest,
        ids: (args ?? []).flat(),
        since: since === undefined ? undefined : parseDateInput(since),
        intervalMs: duration(interval),
      })),
  );
  checkRecoverInput(input);
  const output = context.output({ json: input.json });
  const config = context.config();
  const replicate = replicateClientFromConfig(config, { onRetry: render.reportRetry(output) });
  const [db, storage] = [await context.database(), await context.storage()];
  context.throwIfInterrupted();
  const progress = await output.progress("Recovering…");
  const result = await runRecover(input, {
    replicate,
    ingest: ingestPrediction,
    pipeline: { db, storage, config, signal: context.signal },
    signal: context.signal,
    onEvent: render.reportEvent(output, progress),
  }).finally(() => progress.done());
  render.renderRecover(result, output);
  const error = render.recoverError(result);
  if (error) throw error;
}
