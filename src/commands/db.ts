import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { describeSettings } from "../config.ts";
import { ExitCode, UserError } from "../errors.ts";
import { runDbCheck, runDbMigrate, runDbStatus } from "../jobs/db.ts";
import { renderDbCheck, renderDbMigrate, renderDbStatus } from "../ui/db-render.ts";
import { registerPrune } from "./db-prune.ts";

// `db migrate`, `db status`, `db check`: src/jobs/db.ts does the work, src/ui/db-render.ts shows it.

export function register(program: Command, signal: AbortSignal): void {
  const db = program
    .command("db")
    .description("Apply or inspect genstore's migrations, and check the generations table")
    .addHelpText(
      "after",
      `
genstore's own tables and migration history live in a schema of their own (genstore, or
GENSTORE_SCHEMA); the generations table is genstore's own, or the app's (attached).

Examples:
  $ genstore db status
  $ DATABASE_URL=postgresql://app@db:5432/app genstore db migrate
  $ genstore db check --json`,
    );
  db.command("migrate")
    .description("Apply genstore's pending migrations to its schema (as `prisma migrate deploy` does)")
    .option("--json", "print the result as JSON")
    .action(withContext(migrateAction, signal));
  db.command("status")
    .description(
      "Show genstore's applied and pending migrations and the generations table in use; exits 4 when not up to date",
    )
    .option("--json", "print the result as JSON")
    .action(withContext(statusAction, signal));
  db.command("check")
    .description(
      "Inspect the generations table: fields, status mapping, uniqueness, indexes; exits 3 when genstore cannot use it",
    )
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
It never changes the table: missing fields come as lines for the app's schema.prisma and
missing indexes as CREATE INDEX statements, to apply with the app's own tooling.`,
    )
    .action(withContext(checkAction, signal));
  registerPrune(db, signal);
}

async function migrateAction(options: { json?: boolean }, context: Context): Promise<void> {
  const output = context.output({ json: options.json });
  // Which database this is, before touching it: a migration must never go somewhere unexpected.
  output.info(`Using ${describeSettings(context.config())}.`);
  const db = await context.database({ migrate: false });
  const progress = await output.progress("Applying migrations…");
  const result = await runDbMigrate({ db, generations: context.config().generations }).catch((error: unknown) => {
    progress.fail();
    throw error;
  });
  progress.done();
  renderDbMigrate(result, output);
}

async function statusAction(options: { json?: boolean }, context: Context): Promise<void> {
  const output = context.output({ json: options.json });
  output.info(`Using ${describeSettings(context.config())}.`);
  const db = await context.database({ migrate: false });
  const status = await runDbStatus({ db, generations: context.config().generations });
  renderDbStatus(status, output);
  if (!status.upToDate) {
    throw new UserError(`${status.database} is not up to date.`, {
      exitCode: ExitCode.database,
      hint: "Run `genstore db migrate`.",
    });
  }
}

async function checkAction(options: { json?: boolean }, context: Context): Promise<void> {
  const output = context.output({ json: options.json });
  const db = await context.database({ migrate: false });
  const check = await runDbCheck({ db, generations: context.config().generations });
  renderDbCheck(check, output);
  if (!check.exists || !check.usable) {
    throw new UserError(
      check.exists
        ? `genstore cannot use ${check.table} as configured (see above).`
        : `The generations table ${check.table} does not exist in ${check.database}.`,
      {
        exitCode: ExitCode.config,
        hint: check.exists
          ? "Add the missing fields with the app's tooling, or map the app's names in genstore.config.json."
          : "Run `genstore db migrate` (genstore's own table), or name the app's table in genstore.config.json (generations.table).",
      },
    );
  }
}
