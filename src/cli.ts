import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { registerBackfill } from "./commands/backfill.ts";
import { registerDb } from "./commands/db.ts";
import { registerList } from "./commands/list.ts";
import { registerMigrateKeys } from "./commands/migrate-keys.ts";
import { registerRecover } from "./commands/recover.ts";
import { registerServeWebhook } from "./commands/serve-webhook.ts";
import { registerTrigger } from "./commands/trigger.ts";
import { packageRoot } from "./paths.ts";
import path from "node:path";

// The only module that parses arguments and the only place that turns an error into an
// exit code. Commands are registered from their own files; their heavy dependencies load
// only when they run.

export function buildProgram(signal: AbortSignal): Command {
  const { version } = JSON.parse(readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version: string };
  const program = new Command("genstore")
    .description(
      "Make sure no Replicate generation is ever lost: copy outputs into context folders and keep their rows right.",
    )
    .version(version, "-V, --version", "print genstore's version")
    .option("--verbose", "print stack traces and debugging detail")
    .option(
      "--home <dir>",
      "where the embedded database and local storage live (env GENSTORE_HOME, default ./.genstore)",
    )
    .option("--database-url <url>", "a PostgreSQL server instead of the embedded database (env DATABASE_URL)")
    .addOption(new Option("--storage <provider>", "storage provider (env GENSTORE_STORAGE)").choices(["local", "aws"]))
    .option("--no-color", "no colours (also NO_COLOR=1)")
    .showHelpAfterError("(run with --help for usage)")
    .configureHelp({ sortSubcommands: false })
    .addHelpText(
      "after",
      `
Examples:
  $ genstore recover gm3qorzdhgbfurvjtvhg6dckhu      copy a prediction's outputs and fix its row
  $ genstore list --context edited --json           list edited generations as JSON
  $ genstore serve-webhook --port 3000              receive Replicate webhooks locally

Exit codes: 0 ok, 1 bug, 2 usage, 3 configuration, 4 database, 5 storage, 6 Replicate,
7 some items failed, 8 input refused, 9 busy (another run holds the job's lock),
130 interrupted. See the README.`,
    );

  registerRecover(program, signal);
  registerBackfill(program, signal);
  registerMigrateKeys(program, signal);
  registerList(program, signal);
  registerServeWebhook(program, signal);
  registerTrigger(program, signal);
  registerDb(program, signal);
  return program;
}

/** Runs the CLI and returns the exit code; never calls process.exit itself. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts += 1;
    // The first Ctrl-C asks the running command to stop cleanly; a second one does not wait.
    if (interrupts > 1) process.exit(130);
    controller.abort(signal);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const program = buildProgram(controller.signal);
  const verbose = argv.includes("--verbose");
  for (const command of [program, ...allSubcommands(program)]) {
    command.exitOverride();
    command.configureOutput({ outputError: (text, write) => write(text) });
  }
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and --version end with a CommanderError too; those are successes.
      if (
        error.code === "commander.helpDisplayed" ||
        error.code === "commander.version" ||
        error.code === "commander.help"
      )
        return 0;
      return 2;
    }
    const { describeError } = await import("./errors.ts");
    const described = describeError(error);
    const red = process.stderr.isTTY && !process.env.NO_COLOR && !argv.includes("--no-color");
    process.stderr.write(`${red ? "\x1b[31merror:\x1b[39m" : "error:"} ${described.message}\n`);
    if (described.hint) process.stderr.write(`${described.hint}\n`);
    if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return described.exitCode;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function allSubcommands(command: Command): Command[] {
  return command.commands.flatMap((c) => [c, ...allSubcommands(c)]);
}
