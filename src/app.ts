import type { Command } from "commander";
import type { ZodType, z as zod } from "zod";
import { z } from "zod";
import { loadConfig, loadDotEnv, type Config } from "./config.ts";
import { openDatabase, type Database } from "./db/client.ts";
import { ensureMigrated } from "./db/migrations.ts";
import { ExitCode, Interrupted, UserError } from "./errors.ts";
import { createStorage } from "./storage/index.ts";
import type { Storage } from "./storage/types.ts";
import { Output } from "./ui/output.ts";

// What every command's action gets: its config, output, database and storage, built on
// first use, an abort signal for Ctrl-C, and cleanups that run however the command ends.

export interface GlobalOptions {
  verbose?: boolean;
  home?: string;
  databaseUrl?: string;
  storage?: string;
  config?: string;
  color?: boolean;
}

export class Context {
  private readonly cleanups: (() => Promise<void>)[] = [];
  private configValue?: Config;
  private outputInstance?: Output;

  constructor(
    readonly globals: GlobalOptions,
    readonly signal: AbortSignal,
  ) {}

  config(): Config {
    if (!this.configValue) {
      loadDotEnv();
      this.configValue = loadConfig(process.env, {
        home: this.globals.home,
        databaseUrl: this.globals.databaseUrl,
        storage: this.globals.storage,
        config: this.globals.config,
      });
    }
    return this.configValue;
  }

  output(options: { json?: boolean } = {}): Output {
    this.outputInstance ??= new Output({
      json: options.json,
      verbose: this.globals.verbose,
      color: this.globals.color,
    });
    return this.outputInstance;
  }

  /** Validates a command's options with a zod schema; the first problem names its flag. */
  parse<S extends ZodType>(value: unknown, build: (z: typeof zod) => S): zod.output<S> {
    const result = build(z).safeParse(value);
    if (result.success) return result.data;
    const issue = result.error.issues[0]!;
    const flag =
      issue.path.length > 0 ? `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ` : "";
    throw new UserError(`Invalid option: ${flag}${issue.message}.`, {
      exitCode: ExitCode.usage,
      hint: "See --help for the accepted values.",
    });
  }

  /** The database, migrated (embedded) or checked (PostgreSQL); closed when the command ends. */
  async database(options: { migrate?: boolean } = {}): Promise<Database> {
    const config = this.config();
    const db = await openDatabase(config.database, { generations: config.generations });
    this.defer(() => db.close());
    if (options.migrate !== false) await ensureMigrated(db);
    return db;
  }

  async storage(): Promise<Storage> {
    const storage = await createStorage(this.config().storage);
    this.defer(() => storage.close());
    return storage;
  }

  defer(cleanup: () => Promise<void>): void {
    this.cleanups.push(cleanup);
  }

  throwIfInterrupted(): void {
    if (this.signal.aborted)
      throw new Interrupted("Interrupted.", "Run the same command again to continue where it stopped.");
  }

  async close(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0).reverse()) {
      await cleanup().catch(() => {});
    }
  }
}

export type Action<O> = (options: O, context: Context, command: Command) => Promise<void>;

/** Wraps a command's action so it receives a Context that is always closed. */
export function withContext<O>(action: Action<O>, signal: AbortSignal) {
  return async (...args: unknown[]) => {
    const command = args.at(-1) as Command;
    const positional = args.slice(0, -2);
    const options = { ...command.opts<object>(), ...(positional.length > 0 ? { args: positional } : {}) } as O;
    const context = new Context(command.optsWithGlobals<GlobalOptions>(), signal);
    try {
      await action(options, context, command);
    } finally {
      await context.close();
    }
  };
}
