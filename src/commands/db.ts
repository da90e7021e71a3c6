import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import type { MigrationState } from "../core/schema-migrations.ts";
import type { Database } from "../db/client.ts";
import { applyMigrations, migrationState } from "../db/migrations.ts";
import { ExitCode, UserError } from "../errors.ts";

export async function runDbStatus(deps: { db: Database }): Promise<MigrationState & { database: string }> {
  return { database: deps.db.describe, ...(await migrationState(deps.db)) };
}

export async function runDbMigrate(deps: { db: Database }): Promise<{ database: string; applied: string[] }> {
  return { database: deps.db.describe, applied: await applyMigrations(deps.db) };
}

export function register(program: Command, signal: AbortSignal): void {
  const db = program
    .command("db")
    .description("Apply or inspect the database schema's migrations")
    .addHelpText(
      "after",
      `
Examples:
  $ genstore db status
  $ DATABASE_URL=postgresql://app@db:5432/app genstore db migrate`,
    );
  db.command("migrate")
    .description("Apply pending migrations from prisma/migrations (as `prisma migrate deploy` does)")
    .option("--json", "print the result as JSON")
    .action(withContext(migrateAction, signal));
  db.command("status")
    .description("Show applied and pending migrations; exits 4 when the database is not up to date")
    .option("--json", "print the result as JSON")
    .action(withContext(statusAction, signal));
}

async function migrateAction(options: { json?: boolean }, context: Context): Promise<void> {
  const output = context.output({ json: options.json });
  const progress = await output.progress("Applying migrations…");
  const result = await runDbMigrate({ db: await context.database({ migrate: false }) }).catch((error) => {
    progress.fail();
    throw error;
  });
  progress.done();
  if (options.json) return output.printJson(result);
  if (result.applied.length === 0) output.success(`${result.database} is already up to date.`);
  else
    output.success(`Applied ${result.applied.length} migration(s) to ${result.database}: ${result.applied.join(", ")}`);
}

async function statusAction(options: { json?: boolean }, context: Context): Promise<void> {
  const output = context.output({ json: options.json });
  const status = await runDbStatus({ db: await context.database({ migrate: false }) });
  if (options.json) output.printJson(status);
  else {
    output.print(`Database: ${status.database}`);
    for (const name of status.applied) output.print(`  applied  ${name}`);
    for (const name of status.pending) output.print(`  pending  ${name}`);
    for (const name of status.failed) output.print(`  FAILED   ${name}`);
    for (const name of status.unknown) output.print(`  unknown  ${name} (not in this genstore's migrations)`);
    for (const name of status.edited) output.print(`  edited   ${name} (changed since it was applied)`);
    output.print(status.upToDate ? "Up to date." : "Not up to date: run `genstore db migrate`.");
  }
  if (!status.upToDate) {
    throw new UserError(`${status.database} is not up to date (${status.pending.length} pending).`, {
      exitCode: ExitCode.database,
      hint: "Run `genstore db migrate`.",
    });
  }
}
