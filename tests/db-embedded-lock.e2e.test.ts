import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { lockEmbeddedDatabase, lockFileOf } from "../src/db/embedded-lock.ts";
import { UserError } from "../src/errors.ts";
import { genstore, migratedHome, startBinary } from "./support/cli.ts";
import { tempDir } from "./support/pipeline-fixtures.ts";
import { newSecret } from "./support/webhook-deliveries.ts";

// Two processes on one embedded database corrupt it (PGlite takes no lock on its folder):
// the second is refused with exit 9 and the first one's pid, until the first one stops. The
// real binary, on a migrated embedded database.

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
  return Number(child.stdout.toString());
}

describe("one process at a time on an embedded database", () => {
  it("refuses a command while serve-webhook has the database open (exit 9, naming it), and runs once it stopped", async () => {
    const home = await migratedHome();
    const env = { GENSTORE_HOME: home, REPLICATE_WEBHOOK_SECRET: newSecret() };
    const receiver = await startBinary(env);
    const lock = JSON.parse(readFileSync(path.join(home, "db.lock"), "utf8"));
    expect(lock).toMatchObject({ pid: receiver.child.pid, command: "genstore serve-webhook" });

    const refused = await genstore(["list"], env);
    expect(refused.code).toBe(9);
    expect(refused.stderr).toBe(
      `error: The embedded database in ${path.join(home, "db")} is in use by process ${receiver.child.pid} (genstore serve-webhook, since ${lock.since}).\n` +
        `Two processes on one embedded database corrupt it: stop that one first, or use PostgreSQL (DATABASE_URL) to run commands side by side. If no such process runs, delete ${path.join(home, "db.lock")}.\n`,
    );
    const worker = await genstore(["worker"], env);
    expect(worker.code).toBe(9);

    receiver.child.kill("SIGTERM");
    expect(await receiver.exited).toBe(0);
    expect(existsSync(path.join(home, "db.lock"))).toBe(false);
    const listed = await genstore(["list", "--json"], env);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([]);
    expect(existsSync(path.join(home, "db.lock"))).toBe(false);
  });

  it("takes over the lock of a process that died without removing it", async () => {
    const home = await migratedHome();
    const file = path.join(home, "db.lock");
    writeFileSync(file, JSON.stringify({ pid: deadPid(), command: "genstore serve-webhook", since: "2026-01-01" }));
    const listed = await genstore(["list", "--json"], { GENSTORE_HOME: home });
    expect(listed.stderr).toBe("");
    expect(listed.code).toBe(0);
    expect(existsSync(file)).toBe(false);
  });

  it("counts the opens of one process, and refuses another process's live lock", async () => {
    const dir = path.join(await tempDir("genstore-lock-"), "db");
    const file = lockFileOf(dir);
    const first = lockEmbeddedDatabase(dir);
    const second = lockEmbeddedDatabase(dir);
    first.release();
    expect(JSON.parse(readFileSync(file, "utf8")).pid).toBe(process.pid);
    second.release();
    expect(existsSync(file)).toBe(false);

    // The parent of this process (vitest's main process) is alive and is not this process.
    writeFileSync(file, JSON.stringify({ pid: process.ppid }));
    let error: unknown;
    try {
      lockEmbeddedDatabase(dir);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).exitCode).toBe(9);
    expect((error as UserError).message).toBe(`The embedded database in ${dir} is in use by process ${process.ppid}.`);
    expect(JSON.parse(readFileSync(file, "utf8")).pid).toBe(process.ppid); // left as it was
  });
});
