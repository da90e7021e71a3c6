import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import nextEnv from "@next/env";
import { z } from "zod";
import { parseDuration } from "./core/dates.ts";
import { DEFAULT_RETRY_WINDOW } from "./core/delivery-retry.ts";
import { GENERATION_FIELDS } from "./core/generation-table.ts";
import { STATUSES } from "./core/status.ts";
import { ConfigError, UserError } from "./errors.ts";

// The one place where environment variables, genstore.config.json and flags become a typed
// Config. Flags win over the environment, the environment over the file; the `.env` files
// of the working directory fill in variables that are not set.

export type DatabaseConfig = (
  | { kind: "embedded"; dir: string }
  /** schema: the connection's schema (Prisma's `?schema=`), where an app's table is looked for. */
  | { kind: "postgres"; url: string; schema?: string }
) & {
  /** The schema of genstore's own tables and migration history (default genstore). */
  genstoreSchema?: string;
};

/** genstore.config.json's `generations`: the app's table, when its names differ from the seed's. */
export type GenerationsConfig = z.output<typeof generationsSchema>;

export type StorageConfig =
  | { provider: "local"; root: string }
  | {
      provider: "aws";
      bucket: string;
      region: string;
      endpoint?: string;
      forcePathStyle: boolean;
      /** The SDK's checksum behaviour; many S3-compatible servers need WHEN_REQUIRED. */
      checksums: "WHEN_REQUIRED" | "WHEN_SUPPORTED";
    };

export interface Config {
  home: string;
  /** The configuration file that was read, if any. */
  configFile?: string;
  generations?: GenerationsConfig;
  database: DatabaseConfig;
  storage: StorageConfig;
  replicate: { token?: string; baseUrl: string };
  webhookSecret?: string;
  /** Hosts outputs may be downloaded from; "host" also admits its subdomains, "host:port" is exact. */
  outputHosts: string[];
  maxOutputBytes: number;
}

/** Flags that override the environment (each command passes the ones it has). */
export interface ConfigFlags {
  home?: string;
  databaseUrl?: string;
  storage?: string;
  /** --config: genstore.config.json's path. */
  config?: string;
}

export type Env = Record<string, string | undefined>;

const GiB = 1024 ** 3;

const boolish = z
  .enum(["1", "0", "true", "false", "yes", "no"], { message: "must be true or false" })
  .transform((v) => v === "1" || v === "true" || v === "yes");

/** A PostgreSQL identifier genstore puts in a search_path or a lock name: plain, 63 bytes at most. */
const identifier = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, { message: "must be a plain identifier (letters, digits, _)" });

/** A name the app's schema uses (quoted in every statement, so any name PostgreSQL accepts). */
const sqlName = z
  .string()
  .min(1, { message: "must not be empty" })
  .max(63, { message: "must be at most 63 characters" });

const generationsSchema = z.strictObject({
  /** `schema.table` or `table` (in the connection's schema), as the app's @@map names it. */
  table: z
    .string()
    .regex(/^([^."]{1,63}\.)?[^."]{1,63}$/, { message: 'must be "table" or "schema.table"' })
    .optional(),
  /** The app's column for each field genstore uses, where the names differ (@map). */
  columns: z.partialRecord(z.enum(GENERATION_FIELDS), sqlName).optional(),
  /** The app's value for each of Replicate's statuses, where the vocabulary differs (a Prisma enum). */
  status: z.partialRecord(z.enum(STATUSES), sqlName).optional(),
  /** Values for the app's NOT NULL columns that have no default, when genstore creates a row. */
  defaults: z.record(sqlName, z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
});

const fileSchema = z.strictObject({
  $schema: z.string().optional(),
  /** genstore's own schema (GENSTORE_SCHEMA wins). */
  schema: identifier.optional(),
  generations: generationsSchema.optional(),
});

export const CONFIG_FILE_NAME = "genstore.config.json";

const envSchema = z.object({
  GENSTORE_HOME: z.string().min(1).default(".genstore"),
  GENSTORE_CONFIG: z.string().min(1).optional(),
  GENSTORE_SCHEMA: identifier.optional(),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { message: "must be a postgresql:// URL" })
    .optional(),
  GENSTORE_STORAGE: z.enum(["local", "aws"], { message: "must be local or aws" }).default("local"),
  GENSTORE_STORAGE_DIR: z.string().min(1).optional(),
  S3_BUCKET: z.string().min(1).optional(),
  AWS_REGION: z.string().min(1).optional(),
  AWS_ENDPOINT_URL_S3: z.url({ message: "must be a URL such as http://127.0.0.1:9000" }).optional(),
  S3_FORCE_PATH_STYLE: boolish.optional(),
  GENSTORE_S3_CHECKSUMS: z
    .enum(["when_required", "when_supported"], { message: "must be when_required or when_supported" })
    .optional(),
  REPLICATE_API_TOKEN: z.string().min(1).optional(),
  REPLICATE_API_BASE_URL: z.url({ message: "must be a URL" }).default("https://api.replicate.com/v1"),
  REPLICATE_WEBHOOK_SECRET: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/=]+$/, { message: "must look like whsec_<base64>" })
    .optional(),
  GENSTORE_OUTPUT_HOSTS: z.string().optional(),
  GENSTORE_MAX_OUTPUT_BYTES: z.coerce
    .number({ message: "must be a number of bytes" })
    .int({ message: "must be a whole number of bytes" })
    .positive({ message: "must be positive" })
    .default(2 * GiB),
});

let envFilesRead: string[] = [];

/**
 * Reads the working directory's `.env` files into process.env as Next.js does, so that the
 * CLI run in an app's folder sees the app's settings: `.env.$NODE_ENV.local`, `.env.local`
 * (not when NODE_ENV is test), `.env.$NODE_ENV`, `.env`; the first to set a variable wins,
 * and variables already set win over every file. NODE_ENV defaults to development, as for
 * `next dev`. Next's own loader (@next/env) does it, so values and `$VAR` expansion are
 * read exactly as the app reads them. Returns the files read.
 */
export function loadDotEnv(cwd = process.cwd()): string[] {
  const errors: string[] = [];
  const log = { info: () => {}, error: (...args: unknown[]) => errors.push(args.map(String).join(" ")) };
  const { loadedEnvFiles } = nextEnv.loadEnvConfig(cwd, process.env.NODE_ENV !== "production", log, true);
  if (errors.length > 0) throw new ConfigError(`Cannot read the .env files in ${cwd}: ${errors[0]}`);
  envFilesRead = loadedEnvFiles.map((file) => file.path);
  return envFilesRead;
}

/** "the embedded database in …, local storage in …; settings from .env.local" (for the CLI's messages). */
export function describeSettings(config: Config): string {
  const storage =
    config.storage.provider === "local"
      ? `local storage in ${config.storage.root}`
      : `S3 bucket ${config.storage.bucket}${config.storage.endpoint ? ` at ${config.storage.endpoint}` : ""}`;
  const files = envFilesRead.length > 0 ? `settings from ${envFilesRead.join(", ")}` : "no .env file read";
  return `${describeDatabase(config.database)}, ${storage}; ${files}`;
}

/** genstore.config.json: from --config, GENSTORE_CONFIG, or the working directory; validated, every error naming its key. */
export function loadConfigFile(
  explicit: string | undefined,
  cwd = process.cwd(),
): { file?: string; value: z.output<typeof fileSchema> } {
  const file = explicit !== undefined ? path.resolve(cwd, explicit) : path.join(cwd, CONFIG_FILE_NAME);
  if (!existsSync(file)) {
    if (explicit !== undefined)
      throw new ConfigError(`Configuration file ${file} does not exist.`, "Check --config or GENSTORE_CONFIG.");
    return { value: {} };
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(
      `Cannot read ${file}: ${(error as Error).message.split("\n")[0]}.`,
      "It must be one JSON object.",
    );
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      if (issue.code === "unrecognized_keys")
        return issue.keys.map((key) => `${[...issue.path, key].join(".")} is not a setting genstore knows`).join("; ");
      const key = issue.path.join(".");
      if (issue.code === "invalid_key") return `${key} is not a name genstore knows`;
      return `${key || "the document"} ${issue.message}`;
    });
    throw new ConfigError(
      `Invalid configuration in ${file}: ${problems.join("; ")}.`,
      `See the README's section "Use genstore on your app's database".`,
    );
  }
  return { file, value: parsed.data };
}

export function loadConfig(env: Env = process.env, flags: ConfigFlags = {}): Config {
  const merged: Env = { ...env };
  if (flags.home !== undefined) merged.GENSTORE_HOME = flags.home;
  if (flags.databaseUrl !== undefined) merged.DATABASE_URL = flags.databaseUrl;
  if (flags.storage !== undefined) merged.GENSTORE_STORAGE = flags.storage;
  // An empty variable means "not set", as in most tools.
  for (const [key, value] of Object.entries(merged)) if (value === "") delete merged[key];

  const parsed = envSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${String(issue.path[0])} ${issue.message}`);
    throw new ConfigError(
      `Invalid configuration: ${problems.join("; ")}.`,
      "Fix the variables named above (see the README's configuration table).",
    );
  }
  const e = parsed.data;
  const home = path.resolve(e.GENSTORE_HOME);
  const file = loadConfigFile(flags.config ?? e.GENSTORE_CONFIG);
  const genstoreSchema = e.GENSTORE_SCHEMA ?? file.value.schema;

  const missing: string[] = [];
  let storage: StorageConfig;
  if (e.GENSTORE_STORAGE === "aws") {
    if (!e.S3_BUCKET) missing.push("S3_BUCKET");
    const custom = e.AWS_ENDPOINT_URL_S3 !== undefined;
    storage = {
      provider: "aws",
      bucket: e.S3_BUCKET ?? "",
      region: e.AWS_REGION ?? "us-east-1",
      endpoint: e.AWS_ENDPOINT_URL_S3,
      forcePathStyle: e.S3_FORCE_PATH_STYLE ?? custom,
      checksums:
        (e.GENSTORE_S3_CHECKSUMS ?? (custom ? "when_required" : "when_supported")) === "when_required"
          ? "WHEN_REQUIRED"
          : "WHEN_SUPPORTED",
    };
  } else {
    storage = { provider: "local", root: path.resolve(e.GENSTORE_STORAGE_DIR ?? path.join(home, "storage")) };
  }
  if (missing.length > 0) {
    throw new ConfigError(
      `Missing configuration: ${missing.join(", ")} (needed because GENSTORE_STORAGE=aws).`,
      "Set them in the environment or in .env.",
    );
  }

  const database: DatabaseConfig = e.DATABASE_URL
    ? postgresConfig(e.DATABASE_URL)
    : { kind: "embedded", dir: path.join(home, "db") };
  if (genstoreSchema !== undefined) database.genstoreSchema = genstoreSchema;
  return {
    home,
    configFile: file.file,
    generations: file.value.generations,
    database,
    storage,
    replicate: { token: e.REPLICATE_API_TOKEN, baseUrl: e.REPLICATE_API_BASE_URL.replace(/\/+$/, "") },
    webhookSecret: e.REPLICATE_WEBHOOK_SECRET,
    outputHosts: parseHostList(e.GENSTORE_OUTPUT_HOSTS),
    maxOutputBytes: e.GENSTORE_MAX_OUTPUT_BYTES,
  };
}

/** Prisma's convention: `?schema=name` selects the PostgreSQL schema. */
function postgresConfig(url: string): DatabaseConfig {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError("Invalid configuration: DATABASE_URL is not a valid URL.");
  }
  const schema = parsed.searchParams.get("schema") ?? undefined;
  if (schema !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(schema)) {
    throw new ConfigError("Invalid configuration: DATABASE_URL's schema parameter must be a plain identifier.");
  }
  parsed.searchParams.delete("schema");
  return { kind: "postgres", url: parsed.toString(), schema };
}

function parseHostList(value: string | undefined): string[] {
  if (value === undefined) return ["replicate.delivery"];
  const hosts = value
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== "");
  for (const host of hosts) {
    if (!/^[a-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-f:]+\](:\d{1,5})?$/.test(host)) {
      throw new ConfigError(`Invalid configuration: GENSTORE_OUTPUT_HOSTS entry "${host}" is not a host or host:port.`);
    }
  }
  return hosts;
}

/** A duration setting: a command's flag, else an environment variable, else a default. */
export interface DurationSetting {
  /** The flag as typed ("--retention") and its value, when given. */
  flag: { name: string; value: string | undefined };
  variable: string;
  fallback: string;
  /** "7d, 36h or 2w": what the error shows as examples. */
  examples: string;
  /** What the default amounts to, for the hint ("keeps 7 days"). */
  fallbackMeans: string;
}

/**
 * The setting in milliseconds (the one duration parser, src/core/dates.ts). A value that is
 * not a positive duration is refused, naming where it came from: a flag is the user's error,
 * the variable a configuration error.
 */
export function durationSetting(setting: DurationSetting, env: Env = process.env): number {
  const fromFlag = setting.flag.value !== undefined;
  const text = fromFlag ? setting.flag.value! : (env[setting.variable] ?? setting.fallback);
  const ms = parseDuration(text);
  if (ms !== undefined && ms > 0) return ms;
  const problem = `must be a duration such as ${setting.examples} (got ${JSON.stringify(text)})`;
  if (fromFlag)
    throw new UserError(`Invalid option: ${setting.flag.name} ${problem}.`, {
      hint: "See --help for the accepted values.",
    });
  throw new ConfigError(`${setting.variable} ${problem}.`, `Fix or unset it (the default ${setting.fallbackMeans}).`);
}

/** The variable that sets how long a webhook delivery's retryable failure is retried (serve-webhook's --retry-window overrides it). */
export const RETRY_WINDOW_VARIABLE = "GENSTORE_DELIVERY_RETRY_WINDOW";

/** The retry window of webhook deliveries: the flag, else GENSTORE_DELIVERY_RETRY_WINDOW, else 1 h. */
export function retryWindowMs(flag: { name: string; value: string | undefined }, env: Env = process.env): number {
  return durationSetting(
    {
      flag,
      variable: RETRY_WINDOW_VARIABLE,
      fallback: DEFAULT_RETRY_WINDOW,
      examples: "1h, 90m or 2h",
      fallbackMeans: "retries for 1 hour after the prediction completed",
    },
    env,
  );
}

/** Where the user is told what a secret-requiring command needs. */
export function requireReplicateToken(config: Config): string {
  if (!config.replicate.token) {
    throw new ConfigError(
      "Missing configuration: REPLICATE_API_TOKEN.",
      "Create a token at replicate.com/account/api-tokens and set REPLICATE_API_TOKEN.",
    );
  }
  return config.replicate.token;
}

/** Where the database is, for messages (never prints a password). */
export function describeDatabase(database: DatabaseConfig): string {
  if (database.kind === "embedded") return `the embedded database in ${database.dir}`;
  const url = new URL(database.url);
  return `PostgreSQL at ${url.hostname}:${url.port || 5432}${url.pathname}${database.schema ? ` (schema ${database.schema})` : ""}`;
}
