import { Chalk, type ChalkInstance } from "chalk";
import { loadOra } from "../lazy.ts";
import type { JsonArraySpool } from "./json-spool.ts";

// All chatter goes to stderr; stdout carries only data (a table for people, one JSON
// document with --json). Each stream has its own colour level, decided from --no-color,
// NO_COLOR, FORCE_COLOR and whether that stream is a terminal: `genstore list > out.txt`
// run from a terminal writes a plain table into the file and may still colour its errors.

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
  /** Colours for what goes to stdout (tables, summaries). */
  readonly stdoutColor: ChalkInstance;
  /** Colours for what goes to stderr (messages, warnings, errors). */
  readonly stderrColor: ChalkInstance;
  readonly interactive: boolean;
  private readonly out: NodeJS.WritableStream;
  private readonly err: NodeJS.WritableStream;

  constructor(options: OutputOptions = {}) {
    const env = options.env ?? process.env;
    this.out = options.stdout ?? process.stdout;
    this.err = options.stderr ?? process.stderr;
    this.json = options.json ?? false;
    this.verbose = options.verbose ?? false;
    this.interactive = isTTY(this.err) && !this.json && env.CI === undefined;
    this.stdoutColor = new Chalk({ level: colorLevel(options.color, env, this.out) });
    this.stderrColor = new Chalk({ level: colorLevel(options.color, env, this.err) });
  }

  /** Data for people (a table, a summary line) on stdout; suppressed with --json. */
  print(text: string): void {
    if (!this.json) this.out.write(text.endsWith("\n") ? text : `${text}\n`);
  }

  /** The one JSON document of a --json run. */
  printJson(value: unknown): void {
    this.out.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
  }

  /** One line of an --ndjson stream (a record a line, written as it comes). */
  printJsonLine(value: unknown): void {
    this.out.write(`${JSON.stringify(value, jsonReplacer)}\n`);
  }

  /** The one JSON document of a --json run, with one array too long for memory read back from its spool. */
  async printJsonDocument(spool: JsonArraySpool, key: string, rest: Record<string, unknown>): Promise<void> {
    await spool.writeDocument(this.out, key, rest);
  }

  info(text: string): void {
    if (!this.json) this.err.write(`${text}\n`);
  }

  success(text: string): void {
    this.info(`${this.stderrColor.green("✔")} ${text}`);
  }

  warn(text: string): void {
    this.err.write(`${this.stderrColor.yellow("warning:")} ${text}\n`);
  }

  error(text: string, hint?: string): void {
    this.err.write(`${this.stderrColor.red("error:")} ${text}\n`);
    if (hint) this.err.write(`${this.stderrColor.dim(hint)}\n`);
  }

  debug(text: string): void {
    if (this.verbose) this.err.write(`${this.stderrColor.dim(text)}\n`);
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

function isTTY(stream: NodeJS.WritableStream): boolean {
  return (stream as Partial<NodeJS.WriteStream>).isTTY === true;
}

/**
 * The colour level of one stream: none with --no-color or a non-empty NO_COLOR
 * (no-color.org); else FORCE_COLOR's level when set (0/false none, 2 and 3 more colours,
 * anything else basic); else basic colours on a terminal that is not TERM=dumb.
 */
export function colorLevel(
  flag: boolean | undefined,
  env: Record<string, string | undefined>,
  stream: NodeJS.WritableStream,
): 0 | 1 | 2 | 3 {
  if (flag === false || (env.NO_COLOR !== undefined && env.NO_COLOR !== "")) return 0;
  const forced = env.FORCE_COLOR;
  if (forced !== undefined) {
    if (forced === "0" || forced === "false") return 0;
    return forced === "2" ? 2 : forced === "3" ? 3 : 1;
  }
  return isTTY(stream) && env.TERM !== "dumb" ? 1 : 0;
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

/** "45s", "2m 05s", "3h 20m", "7d 00h". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, "0")}h`;
}
