import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { wholeNumber } from "./option-rules.ts";
import { STORAGE_CONTEXTS } from "../core/operation.ts";
import { checkMigrateKeysInput, runMigrateKeys } from "../jobs/migrate-keys.ts";
import { migrateKeysView } from "../ui/migrate-keys-render.ts";

// `migrate-keys`: moves legacy storage keys into the context folders. The work is in
// src/jobs/migrate-keys.ts, what it shows in src/ui/migrate-keys-render.ts.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("migrate-keys")
    .description("Move legacy storage keys into the context folders and update storageKeys (resumable, crash-safe)")
    .option("--dry-run", "print the plan (old → new, counts per context, orphans, unknown keys); change nothing")
    .option("--prefix <prefix>", "only keys under this prefix (e.g. generations/ or user_123/)")
    .option(
      "--orphans-to <context>",
      "move objects no row references into this context (generated | edited | upscaled | videos)",
    )
    .option("--concurrency <n>", "objects moved at once", "16")
    .option("--keep-source", "copy and update rows, but leave the legacy objects in place")
    .option("--json", "print one JSON document with the result (and every decision, with --dry-run) and nothing else")
    .addHelpText(
      "after",
      `
Each object is copied server-side, verified (size, and ETag when both are single-part),
its row's storageKeys updated, and only then is the legacy key deleted. A journal
(KeyMove table) records every step: after a crash or Ctrl-C, run the same command again.
Legacy layouts: <userId>/<file>, generations/<userId>/<file>, uploads/[<userId>/]<file>,
thumbnails|thumbs/<userId>/<file>. Anything else is reported as unknown, never guessed at.
Only one run at a time per database: a second one changes nothing and exits with code 9
(busy); run it again once the first has ended. --dry-run takes no lock.

Examples:
  $ genstore migrate-keys --dry-run
  $ genstore migrate-keys --prefix generations/ --concurrency 32
  $ genstore migrate-keys --orphans-to generated --keep-source --json`,
    )
    .action(withContext(migrateKeysAction, signal));
}

async function migrateKeysAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) =>
    z.object({
      dryRun: z.boolean().optional(),
      prefix: z.string().min(1).optional(),
      orphansTo: z.enum(STORAGE_CONTEXTS).optional(),
      concurrency: wholeNumber(z, 1, 1024),
      keepSource: z.boolean().optional(),
      json: z.boolean().optional(),
    }),
  );
  checkMigrateKeysInput(input);
  const output = context.output({ json: input.json });
  context.throwIfInterrupted();
  const [db, storage] = await Promise.all([context.database(), context.storage()]);
  const view = await migrateKeysView(output, input);
  try {
    const result = await runMigrateKeys(
      { ...input, countFirst: output.interactive && !input.dryRun },
      {
        db,
        storage,
        signal: context.signal,
        onEvent: view.onEvent,
        onProgress: view.onProgress,
      },
    );
    await view.finish(result);
  } finally {
    view.close();
  }
}
