import { existsSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "./errors.ts";

// The one place where environment variables and flags become a typed Config. Flags win
// over the environment; `.env` in the working directory fills in what is not set.

export type DatabaseConfig = { kind: "embedded"; dir: string } | { kind: "postgres"; url: string; schema?: string };

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
}

export type Env = Record<string, string | undefined>;

const GiB = 1024 ** 3;

const boolish = z
  .enum(["1", "0", "true", "false", "yes", "no"], { message: "must be true or false" })
  .transform((v) => v === "1" || v === "true" || v === "yes");

const envSchema = z.object({
  GENSTORE_HOME: z.string().min(1).default(".genstore"),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { message: "must be a postgresql:// URL" })
    .optional(),
  GENSTORE_STORAGE: z.enum(["local", "aws"], { message: "must be local or aws" }).default("local"),
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

/** Reads `.env` from the working directory into process.env without overriding what is set. */
export function loadDotEnv(cwd = process.cwd()): void {
  const file = path.join(cwd, ".env");
  if (!existsSync(file)) return;
  try {
    // eslint-disable-next-line n/no-unsupported-features/node-builtins -- in Node since 20.12 (engines)
    process.loadEnvFile(file);
  } catch (error) {
    throw new ConfigError(`Cannot read ${file}: ${(error as Error).message}`);
  }
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
    storage = { provider: "local", root: path.join(home, "storage") };
  }
  if (missing.length > 0) {
    throw new ConfigError(
      `Missing configuration: ${missing.join(", ")} (needed because GENSTORE_STORAGE=aws).`,
      "Set them in the environment or in .env.",
    );
  }

  return {
    home,
    database: e.DATABASE_URL ? postgresConfig(e.DATABASE_URL) : { kind: "embedded", dir: path.join(home, "db") },
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
