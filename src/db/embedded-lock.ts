import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { ExitCode, UserError } from "../errors.ts";

// One process at a time on an embedded database. PGlite takes no lock on its folder (the
// postmaster.pid it writes holds a made-up pid), and two processes writing one folder corrupt
// it (electric-sql/pglite#1106): `genstore list` run while `serve-webhook` has it open was
// enough. A file beside the folder (`db.lock` for `db/`) names the process that has it open, as
// PostgreSQL's postmaster.pid does; another process is refused while that one is alive, and the
// file of a process that died without removing it is taken over. Within one process the
// database may be opened more than once (a Next.js route module evaluated again): that is this
// process's own business, so the file is counted, not refused.

interface Holder {
  pid: number;
  command?: string;
  since?: string;
}

/** Lock files this process holds, and how many opens hold each. */
const held = new Map<string, number>();
let exitHook = false;

export interface EmbeddedLock {
  /** Removes the file once the last open of this process closes. */
  release(): void;
}

export function lockFileOf(dir: string): string {
  return `${path.resolve(dir)}.lock`;
}

export function lockEmbeddedDatabase(dir: string): EmbeddedLock {
  const file = lockFileOf(dir);
  const count = held.get(file);
  if (count !== undefined) {
    held.set(file, count + 1);
    return releaser(file);
  }
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, "wx");
      try {
        const holder: Holder = {
          pid: process.pid,
          command: commandName(),
          since: new Date().toISOString(),
        };
        writeSync(fd, `${JSON.stringify(holder)}\n`);
      } finally {
        closeSync(fd);
      }
      held.set(file, 1);
      if (!exitHook) {
        exitHook = true;
        // A process that exits without closing the database (an error, process.exit) leaves no file behind.
        process.on("exit", () => {
          for (const lock of held.keys()) removeIfOurs(lock);
        });
      }
      return releaser(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    if (attempt >= 20) throw busy(dir, file, undefined);
    const holder = readHolder(file);
    if (holder === "starting") {
      // Made between another process's open and its write: a moment later it names its process.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      continue;
    }
    if (holder !== "gone" && holder.pid !== process.pid && isAlive(holder.pid)) throw busy(dir, file, holder);
    // The process that held it is gone (or it is this process's own, left by a database never closed).
    try {
      unlinkSync(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
}

/** "genstore serve-webhook": the program and its first word that looks like a command (never an option's value: a URL may hold a password). */
function commandName(): string {
  const program = path.basename(process.argv[1] ?? "node").replace(/\.[cm]?js$/, "");
  const word = process.argv.slice(2).find((arg) => /^[a-z][a-z-]*$/.test(arg));
  return word ? `${program} ${word}` : program;
}

function releaser(file: string): EmbeddedLock {
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      const count = held.get(file) ?? 0;
      if (count > 1) return void held.set(file, count - 1);
      held.delete(file);
      removeIfOurs(file);
    },
  };
}

function removeIfOurs(file: string): void {
  const holder = readHolder(file);
  if (typeof holder === "object" && holder.pid === process.pid) {
    try {
      unlinkSync(file);
    } catch {
      // gone already
    }
  }
}

/** The file's holder; "starting" when it is being written (empty, just made); "gone" when it vanished or is unreadable and old. */
function readHolder(file: string): Holder | "starting" | "gone" {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return "gone";
  }
  try {
    const holder = JSON.parse(text) as Holder;
    if (Number.isInteger(holder.pid) && holder.pid > 0) return holder;
  } catch {
    // not whole yet, or not ours
  }
  try {
    return Date.now() - statSync(file).mtimeMs < 2_000 ? "starting" : "gone";
  } catch {
    return "gone";
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user's process.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function busy(dir: string, file: string, holder: Holder | undefined): UserError {
  const details = [holder?.command, holder?.since && `since ${holder.since}`].filter(Boolean).join(", ");
  const who = holder ? `process ${holder.pid}${details ? ` (${details})` : ""}` : "another process";
  return new UserError(`The embedded database in ${dir} is in use by ${who}.`, {
    exitCode: ExitCode.busy,
    hint: `Two processes on one embedded database corrupt it: stop that one first, or use PostgreSQL (DATABASE_URL) to run commands side by side. If no such process runs, delete ${file}.`,
  });
}
