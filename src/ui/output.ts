import { Chalk, type ChalkInstance } from "chalk";
import { loadOra } from "../lazy.ts";

// All chatter goes to stderr; stdout carries only data (a table for people, one JSON
// document with --json). Colour follows NO_COLOR / FORCE_COLOR / --no-color and the TTY.

export interface OutputOptions {
  json?: boolean;
  verbose?: boolean;
  color?: boolean;
  stdout?: NodeJS.WriteStream | NodeJS.WritableStream;
  stderr?: NodeJS.WriteStream | NodeJS.WritableStream;
  env?: Record<string, string | undefined>;
}

export interface Progress {
  /** Replaces the progress line (only drawn on a TTY). */
  update(text: string): void;
  /** Ends the progress line and prints a final message. */
  done(text?: string): void;
  fail(text?: string): void;
}

export class Output {
  readonly json: boolean;
  readonly verbose: boolean;
  readonly color: ChalkInstance;
  readonly interactive: boolean;
  private readonly out: NodeJS.WritableStream;
  private readonly err: NodeJS.WritableStream;

  constructor(options: OutputOptions = {}) {
    const env = options.env ?? process.env;
    this.out = options.stdout ?? process.stdout;
    this.err = options.stderr ?? process.stderr;
    this.json = options.json ?? false;
    this.verbose = options.verbose ?? false;
    const errTTY = (this.err as NodeJS.WriteStream).isTTY === true;
    this.interactive = errTTY && !this.json && env.CI === undefined;
    this.color = new Chalk({ level: colorLevel(options.color, env, errTTY) });
  }

  /** Data for people (a table, a summary line) on stdout; suppressed with --json. */
  print(text: string): void {
    if (!this.json) this.out.write(text.endsWith("\n") ? text : `${text}\n`);
  }

  /** The one JSON document of a --json run. */
  printJson(value: unknown): void {
    this.out.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
  }

  info(text: string): void {
    if (!this.json) this.err.write(`${text}\n`);
  }

  success(text: string): void {
    this.info(`${this.color.green("✔")} ${text}`);
  }

  warn(text: string): void {
    this.err.write(`${this.color.yellow("warning:")} ${text}\n`);
  }

  error(text: string, hint?: string): void {
    this.err.write(`${this.color.red("error:")} ${text}\n`);
    if (hint) this.err.write(`${this.color.dim(hint)}\n`);
  }

  debug(text: string): void {
    if (this.verbose) this.err.write(`${this.color.dim(text)}\n`);
  }

  /**
   * A spinner with a progress line on a TTY (ora); silent otherwise (the summary says the
   * rest). Also silent on a TTY that reports 0 columns (some CI runners, a terminal not yet
   * sized): ora divides by the width to know how many lines to clear, and never ends.
   */
  async progress(initial: string): Promise<Progress> {
    if (!this.interactive || !hasUsableWidth(this.err)) {
      return { update: () => {}, done: (text) => text && this.info(text), fail: (text) => text && this.info(text) };
    }
    const ora = await loadOra();
    const spinner = ora({ text: initial, stream: this.err, color: "cyan" }).start();
    return {
      update: (text) => {
        spinner.text = text;
      },
      done: (text) => (text ? spinner.succeed(text) : spinner.stop()),
      fail: (text) => (text ? spinner.fail(text) : spinner.stop()),
    };
  }
}

/** A width is usable when unknown (ora assumes 80) or a positive number of columns. */
export function hasUsableWidth(stream: NodeJS.WritableStream): boolean {
  const columns = (stream as Partial<NodeJS.WriteStream>).columns;
  return columns === undefined || (Number.isFinite(columns) && columns > 0);
}

function colorLevel(flag: boolean | undefined, env: Record<string, string | undefined>, tty: boolean): 0 | 1 | 2 | 3 {
  if (flag === false || (env.NO_COLOR !== undefined && env.NO_COLOR !== "")) return 0;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR === "0" ? 0 : 1;
  return tty ? 1 : 0;
}

/** BigInt (sizes) and Dates become JSON-friendly. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? Number(value) : value;
}

/** "1,234 rows/s, about 2m 05s left" */
export function formatRate(
  done: number,
  total: number | undefined,
  startedAt: number,
  unit: string,
  now = Date.now(),
): string {
  const seconds = Math.max((now - startedAt) / 1000, 0.001);
  const rate = done / seconds;
  const parts = [
    `${done.toLocaleString("en-US")}${total !== undefined ? `/${total.toLocaleString("en-US")}` : ""} ${unit}`,
    `${Math.round(rate).toLocaleString("en-US")}/s`,
  ];
  if (total !== undefined && rate > 0 && done < total) parts.push(`ETA ${formatDuration((total - done) / rate)}`);
  return parts.join(", ");
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m}m ${String(s).padStart(2, "0")}s` : `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}
