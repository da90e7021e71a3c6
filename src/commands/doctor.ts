import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { wholeNumber } from "./option-rules.ts";
import { parseDateInput, parseDuration } from "../core/dates.ts";
import { DEFAULT_STUCK_AFTER_MS } from "../core/doctor.ts";
import { unsafeSegmentReason } from "../core/ids.ts";
import { STORAGE_CONTEXTS } from "../core/operation.ts";
import { ConfigError, ExitCode, UserError } from "../errors.ts";
import { runDoctor } from "../jobs/doctor.ts";
import { ingestPrediction } from "../pipeline/ingest.ts";
import { replicateClientFromConfig } from "../replicate/client.ts";
import { doctorView } from "../ui/doctor-render.ts";
import { reportRetry } from "../ui/recover-render.ts";

// `doctor`: checks that every row's objects are in storage and every object in a context
// folder has its row; src/jobs/doctor.ts does the work, src/ui/doctor-render.ts shows it.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("doctor")
    .description("Check that the rows and the storage agree (nothing lost), and repair what can be repaired")
    .option("-u, --user <userId>", "only this user's rows and folders")
    .option("--context <context>", "only this context (generated | edited | upscaled | videos), by the hybrid rule")
    .option("--since <date>", "only rows created since: ISO date/time, or 24h, 7d")
    .option("--stuck-after <duration>", "a row starting/processing for longer is stuck: 30m, 1h, 2d", "1h")
    .option("--repair", "repair what can be: recover, make thumbnails, record losses (never deletes an object)")
    .option("--dry-run", "with --repair: say what would be repaired; change nothing")
    .option("--adopt", "with --repair: record unreferenced objects on the generation their key names")
    .option("--retry-failed", "with --repair: put failed webhook deliveries back in the queue")
    .option("-c, --concurrency <n>", "predictions recovered at once by --repair (1-32)", "4")
    .option("--json", "print one JSON document with every finding and the summary, and nothing else")
    .option("--ndjson", "print one JSON line per finding (and per repair) as found, then a summary line")
    .addHelpText(
      "after",
      `
Findings: missing object, size mismatch, unreferenced object, missing thumbnail, never
stored, stuck, off layout, failed delivery, context mismatch (see the README's table).
Storage is read by listing (ListObjectsV2 pages, or a directory walk), compared with the
rows' keys as two sorted streams: memory stays flat however large the bucket. Without
--repair nothing is changed.

Examples:
  $ genstore doctor
  $ genstore doctor --context edited --user user_123 --since 7d
  $ genstore doctor --repair --dry-run
  $ genstore doctor --repair --adopt --retry-failed
  $ genstore doctor --ndjson | jq -c 'select(.kind == "missing-object")'

Exit codes: 0 everything is accounted for, 10 problems remain (not repaired, or no
--repair), 4/5/6 the database, storage or Replicate failed, 130 interrupted.`,
    )
    .action(withContext(doctorAction, signal));
}

async function doctorAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const duration = (v: string) => parseDuration(v) ?? 0;
  const input = context.parse(options, (z) =>
    z
      .object({
        user: z.string().optional(),
        context: z.enum(STORAGE_CONTEXTS).optional(),
        since: z
          .string()
          .optional()
          .refine((v) => v === undefined || parseDateInput(v), "must be an ISO date or a duration such as 24h or 7d"),
        stuckAfter: z.string().refine((v) => duration(v) > 0, "must be a duration such as 30m, 1h or 2d"),
        repair: z.boolean().optional(),
        dryRun: z.boolean().optional(),
        adopt: z.boolean().optional(),
        retryFailed: z.boolean().optional(),
        concurrency: wholeNumber(z, 1, 32),
        json: z.boolean().optional(),
        ndjson: z.boolean().optional(),
      })
      .transform(({ user, context: ctx, since, stuckAfter, ...rest }) => ({
        ...rest,
        scope: { userId: user, context: ctx, since: since === undefined ? undefined : parseDateInput(since) },
        stuckAfterMs: duration(stuckAfter) || DEFAULT_STUCK_AFTER_MS,
      })),
  );
  checkDoctorInput(input);
  const output = context.output({ json: input.json === true || input.ndjson === true });
  const config = context.config();
  const replicate = optionalReplicate(() => replicateClientFromConfig(config, { onRetry: reportRetry(output) }));
  const [db, storage] = [await context.database(), await context.storage()];
  context.throwIfInterrupted();
  const view = await doctorView(output, { ndjson: input.ndjson });
  try {
    const result = await runDoctor(input, {
      db,
      storage,
      pipeline: { db, storage, config, signal: context.signal },
      ingest: ingestPrediction,
      replicate,
      signal: context.signal,
      onFinding: view.onFinding,
      onRepair: view.onRepair,
      onProgress: view.onProgress,
    });
    await view.finish(result);
  } finally {
    view.close();
  }
}

function checkDoctorInput(input: {
  scope: { userId?: string };
  repair?: boolean;
  dryRun?: boolean;
  adopt?: boolean;
  retryFailed?: boolean;
  json?: boolean;
  ndjson?: boolean;
}): void {
  if (input.json && input.ndjson) throw new UserError("Choose one of --json and --ndjson.");
  const needRepair = [input.dryRun && "--dry-run", input.adopt && "--adopt", input.retryFailed && "--retry-failed"];
  const orphan = needRepair.find(Boolean);
  if (orphan && !input.repair)
    throw new UserError(`${orphan} applies to --repair.`, { hint: `Run genstore doctor --repair ${orphan}.` });
  const user = input.scope.userId;
  const reason = user === undefined ? undefined : unsafeSegmentReason(user);
  if (reason !== undefined)
    throw new UserError(`Refusing --user ${JSON.stringify(user)}: it ${reason}.`, { exitCode: ExitCode.refused });
}

/** The Replicate client, or undefined without a token: a scan needs none, and repairs say what they lack. */
function optionalReplicate<T>(make: () => T): T | undefined {
  try {
    return make();
  } catch (error) {
    if (error instanceof ConfigError) return undefined;
    throw error;
  }
}
