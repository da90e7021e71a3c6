import v8 from "node:v8";
import { Command, CommanderError, Option } from "commander";
// Inlined by the bundle: nothing is read from the package folder at run time.
import packageJson from "../package.json" with { type: "json" };
import { describeError } from "./errors.ts";
import { Output } from "./ui/output.ts";

// The only module that parses arguments, the only place that turns an error into an exit
// code, and the only place where commands are loaded lazily: `genstore --help` lists every
// command from the map below without loading any of them; running one loads its module
// (which imports what it needs statically) and parses the arguments again with the real
// command registered.

export interface CommandModule {
  register(program: Command, signal: AbortSignal): void;
}

interface CommandEntry {
  summary: string;
  load(): Promise<CommandModule>;
}

const COMMANDS: Record<string, CommandEntry> = {
  recover: {
    summary:
      "Fetch predictions from Replicate, store their outputs in their context folders, create or repair their rows",
    load: () => import("./commands/recover.ts"),
  },
  backfill: {
    summary: "Fill operationType/storageContext on old rows from their prompt prefixes (set-based, batched, resumable)",
    load: () => import("./commands/backfill.ts"),
  },
  "migrate-keys": {
    summary: "Move legacy storage keys into the context folders and update storageKeys (resumable, crash-safe)",
    load: () => import("./commands/migrate-keys.ts"),
  },
  list: { summary: "List generations, newest first", load: () => import("./commands/list.ts") },
  doctor: {
    summary: "Check that the rows and the storage agree (nothing lost), and repair what can be repaired",
    load: () => import("./commands/doctor.ts"),
  },
  gallery: {
    summary: "Browse the generations in a local, read-only web page (tabs, filters, details, media)",
    load: () => import("./commands/gallery.ts"),
  },
  "serve-webhook": {
    summary: "Receive Replicate webhooks: verify the signature, store the delivery durably, ingest it",
    load: () => import("./commands/serve-webhook.ts"),
  },
  worker: {
    summary: "Ingest the webhook deliveries receivers stored in the database (for serve-webhook --no-worker)",
    load: () => import("./commands/worker.ts"),
  },
  trigger: {
    summary: "Send a signed sample prediction webhook to a receiver and print its answer",
    load: () => import("./commands/trigger.ts"),
  },
  db: {
    summary: "Apply or inspect the database schema's migrations; prune old webhook deliveries",
    load: () => import("./commands/db.ts"),
  },
};

/** The program with every command; `loaded` is registered for real, the others as stubs that load theirs. */
export function buildProgram(
  signal: AbortSignal,
  argv: string[],
  loaded?: { name: string; module: CommandModule },
): Command {
  const { version } = packageJson;
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
    .option("--config <file>", "genstore.config.json to read (env GENSTORE_CONFIG, default ./genstore.config.json)")
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
10 doctor found problems that remain, 130 interrupted. See the README.`,
    );

  for (const [name, entry] of Object.entries(COMMANDS)) {
    if (loaded?.name === name) {
      loaded.module.register(program, signal);
      continue;
    }
    // A stub: listed in the help, and when run, loads the command and parses argv again.
    program
      .command(name)
      .description(entry.summary)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument("[args...]")
      .action(async () => {
        const real = buildProgram(signal, argv, { name, module: await entry.load() });
        await real.parseAsync(argv);
      });
  }
  for (const command of [program, ...allSubcommands(program)]) {
    command.exitOverride();
    command.configureOutput({ outputError: (text, write) => write(text) });
  }
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

  const name = commandNameIn(argv);
  // The embedded database is PostgreSQL compiled to WebAssembly. A command that runs a few
  // queries and exits spends more CPU and memory on V8's optimizing compiler (TurboFan) than
  // on the queries: baseline code (Liftoff) halves a `list` on the embedded database (1.6 →
  // 0.7 s CPU, 198 → 135 MB). Commands that run until stopped keep optimizing. The flag must
  // be set before any WebAssembly is compiled, so here, first.
  if (name === undefined || !LONG_RUNNING.has(name)) v8.setFlagsFromString("--liftoff-only");
  const entry = name === undefined ? undefined : COMMANDS[name];
  const program = buildProgram(
    controller.signal,
    argv,
    entry && name ? { name, module: await entry.load() } : undefined,
  );
  const verbose = argv.includes("--verbose");
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
    const described = describeError(error);
    const output = new Output({ color: argv.includes("--no-color") ? false : undefined });
    output.error(described.message, described.hint);
    if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return described.exitCode;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** Commands that run until stopped (their WebAssembly is worth optimizing). */
const LONG_RUNNING = new Set(["serve-webhook", "gallery", "worker"]);

/** Global options that take a value: their value is not the command's name. */
const VALUE_OPTIONS = new Set(["--home", "--database-url", "--storage", "--config"]);

/** The command argv names (`genstore [globals] <command>` or `genstore help <command>`), if any. */
export function commandNameIn(argv: string[]): string | undefined {
  const words: string[] = [];
  const args = argv.slice(2);
  for (let i = 0; i < args.length && words.length < 2; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg.startsWith("-")) {
      if (VALUE_OPTIONS.has(arg)) i++;
      continue;
    }
    words.push(arg);
  }
  return words[0] === "help" ? words[1] : words[0];
}

function allSubcommands(command: Command): Command[] {
  return command.commands.flatMap((c) => [c, ...allSubcommands(c)]);
}
