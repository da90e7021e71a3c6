import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { jsonReplacer } from "./output.ts";

// The items of a JSON array too long to hold in memory (a dry run's million decisions),
// written to a temporary file as they come, so that with --json stdout gets one whole
// document only once the run has succeeded, and nothing at all when it fails. Memory stays
// at one write buffer however many items there are.

const FLUSH_BYTES = 64 * 1024;

export class JsonArraySpool {
  private readonly dir: string;
  private readonly file: string;
  private fd: number | undefined;
  private pending: string[] = [];
  private pendingBytes = 0;
  private count = 0;

  constructor(
    /** How each item is indented in the document. */
    private readonly indent = "    ",
  ) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), "genstore-spool-"));
    this.file = path.join(this.dir, "items.json");
    this.fd = openSync(this.file, "w", 0o600);
  }

  get length(): number {
    return this.count;
  }

  /** Bytes held in memory, not yet written to the file (at most about 64 KiB). */
  get buffered(): number {
    return this.pendingBytes;
  }

  add(item: unknown): void {
    const text = `${this.count++ === 0 ? "" : ","}\n${this.indent}${JSON.stringify(item, jsonReplacer)}`;
    this.pending.push(text);
    this.pendingBytes += text.length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
  }

  /** Writes `{"<key>": [<the items>], ...rest}` (pretty, as Output.printJson) to out. */
  async writeDocument(out: NodeJS.WritableStream, key: string, rest: Record<string, unknown>): Promise<void> {
    this.flush();
    const tail = JSON.stringify(rest, jsonReplacer, 2).slice(1); // `\n  "a": 1\n}` or `}` when empty
    await write(out, `{\n  ${JSON.stringify(key)}: [`);
    await pipeline(createReadStream(this.file), out, { end: false });
    await write(out, `${this.count > 0 ? "\n  " : ""}]${tail === "}" ? "\n}" : `,${tail}`}\n`);
  }

  /** Removes the temporary file; the spool cannot be used after. */
  discard(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }

  private flush(): void {
    if (this.pending.length === 0 || this.fd === undefined) return;
    writeSync(this.fd, this.pending.join(""));
    this.pending = [];
    this.pendingBytes = 0;
  }
}

function write(out: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(text, (error) => (error ? reject(error) : resolve()));
  });
}
