import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { describe, expect, it, onTestFinished } from "vitest";
import { promisify } from "node:util";
import { bin, cleanEnv, genstore } from "./support/cli.ts";
import { pgliteTemplate } from "./support/db.ts";

// Runs the real binary, as an operator would, with colour off.

const run = promisify(execFile);

/** A GENSTORE_HOME whose embedded database is already made (initdb takes seconds). */
async function home(rows: { id: string; prompt: string }[] = []) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-home-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const pglite = await PGlite.create({ dataDir: path.join(dir, "db"), loadDataDir: await pgliteTemplate() });
  for (const row of rows) {
    await pglite.query(
      `INSERT INTO genstore."Generation" (id, "userId", prompt, "updatedAt") VALUES ($1, 'u1', $2, now())`,
      [row.id, row.prompt],
    );
  }
  await pglite.close();
  return dir;
}

describe("genstore (the binary)", () => {
  it("shows help listing every command, each command's own help with examples, and its version", async () => {
    const help = await genstore(["--help"]);
    expect(help.code).toBe(0);
    const listed = [...help.stdout.split("Commands:")[1]!.matchAll(/^ {2}([a-z-]+)/gm)].map((m) => m[1]);
    const commands = [
      "recover",
      "backfill",
      "migrate-keys",
      "list",
      "doctor",
      "gallery",
      "serve-webhook",
      "worker",
      "trigger",
      "db",
    ];
    expect(listed).toEqual([...commands, "help"]);
    const helps = await Promise.all(
      [...commands, "db migrate", "db status", "db prune"].map(async (command) => ({
        command,
        result: await genstore([...command.split(" "), "--help"]),
      })),
    );
    for (const { command, result } of helps) {
      expect(result.code, command).toBe(0);
      expect(result.stdout, command).toContain(`Usage: genstore ${command} [options]`);
      if (!command.startsWith("db ") || command === "db prune") expect(result.stdout, command).toContain("Examples:");
    }
    const version = await genstore(["--version"]);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("answers an unknown flag with one line and exit code 2", async () => {
    const result = await genstore(["list", "--bogus"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown option '--bogus'");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("lists an empty embedded database as []", async () => {
    const result = await genstore(["list", "--json"], { GENSTORE_HOME: await home() });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([]);
  });

  it("prints rows as JSON with Prisma's field names, and only JSON on stdout", async () => {
    const dir = await home([
      { id: "g1", prompt: "[EDITED] old row" },
      { id: "g2", prompt: "a fox" },
    ]);
    const result = await genstore(["list", "--json", "--context", "edited"], { GENSTORE_HOME: dir });
    expect(result.code).toBe(0);
    const rows = JSON.parse(result.stdout);
    expect(rows.map((r: { id: string }) => r.id)).toEqual(["g1"]);
    expect(rows[0]).toHaveProperty("storageKeys");
    const table = await genstore(["list"], { GENSTORE_HOME: dir });
    expect(table.stdout).toContain("edited*");
    expect(table.stdout).not.toContain("\x1b[");
  });

  it("writes no colour into a file that stdout is redirected to from a terminal, and colours stderr there", async () => {
    const dir = await home([{ id: "g1", prompt: "a fox" }]);
    const file = path.join(dir, "out.txt");
    // script(1) runs the command on a pseudo-terminal: stderr is a terminal, stdout the file.
    const shell = (args: string) => `'${process.execPath}' '${bin}' ${args}`;
    const { NO_COLOR: _, FORCE_COLOR: __, ...env } = cleanEnv({ GENSTORE_HOME: dir, TERM: "xterm-256color" });
    const { stdout: terminal } = await run(
      "script",
      ["-qec", `${shell(`list > '${file}'`)}; ${shell(`list --limit 0 >> '${file}'`)}; exit 0`, "/dev/null"],
      { env },
    );
    const written = await readFile(file, "utf8");
    expect(written).toContain("g1");
    expect(written).not.toContain("\x1b[");
    expect(terminal).toContain("\x1b[31merror:");
    expect(terminal).toContain("Invalid option: --limit");
  });

  it("backfills old rows through the binary, after a dry run that changes nothing", async () => {
    const dir = await home([
      { id: "g1", prompt: "[EDITED] old row" },
      { id: "g2", prompt: "[VIDEO] old video" },
      { id: "g3", prompt: "a fox" },
    ]);
    const dry = await genstore(["backfill", "--dry-run", "--json"], { GENSTORE_HOME: dir });
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, byOperation: { edit: 1, video: 1, generation: 1 } });
    expect(
      JSON.parse((await genstore(["list", "--json"], { GENSTORE_HOME: dir })).stdout).map(
        (r: { operationType: unknown }) => r.operationType,
      ),
    ).toEqual([null, null, null]);
    const real = await genstore(["backfill", "--json"], { GENSTORE_HOME: dir });
    expect(real.code).toBe(0);
    expect(JSON.parse(real.stdout)).toMatchObject({ updated: 3 });
    const rows = JSON.parse((await genstore(["list", "--json", "--context", "videos"], { GENSTORE_HOME: dir })).stdout);
    expect(rows).toMatchObject([
      { id: "g2", operationType: "video", storageContext: "videos", metadata: { detectedBy: "prompt-prefix" } },
    ]);
  });

  it("names a misconfigured variable with exit code 3", async () => {
    const result = await genstore(["list"], { GENSTORE_STORAGE: "ftp" });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("GENSTORE_STORAGE must be local or aws");
    expect(result.stderr.trim().split("\n")).toHaveLength(2);
  });

  it("says the database is unreachable with exit code 4 and no stack trace", async () => {
    const result = await genstore(["list"], { DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none" });
    expect(result.code).toBe(4);
    expect(result.stderr).toContain("Cannot reach PostgreSQL at 127.0.0.1:1");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("prints the stack of an error only with --verbose", async () => {
    const result = await genstore(["--verbose", "list"], { DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none" });
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/\n\s+at /);
  });

  it.runIf(process.env.TEST_DATABASE_URL)("refuses to touch an unmigrated PostgreSQL until db migrate", async () => {
    const url = new URL(process.env.TEST_DATABASE_URL!);
    const schema = `genstore_e2e_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: url.toString() });
    await admin.connect();
    await admin.query(`CREATE SCHEMA "${schema}"`);
    onTestFinished(async () => {
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}_gs" CASCADE`);
      await admin.end();
    });
    url.searchParams.set("schema", schema);
    const env = { DATABASE_URL: url.toString(), GENSTORE_SCHEMA: `${schema}_gs` };

    const refused = await genstore(["list"], env);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain("Run `genstore db migrate` first.");
    expect((await genstore(["db", "status"], env)).code).toBe(4);

    const migrated = await genstore(["db", "migrate", "--json"], env);
    expect(migrated.code).toBe(0);
    expect(JSON.parse(migrated.stdout).applied).toEqual(["20261130190000_init"]);
    expect((await genstore(["db", "status"], env)).code).toBe(0);
    expect(JSON.parse((await genstore(["list", "--json"], env)).stdout)).toEqual([]);
  });
});
