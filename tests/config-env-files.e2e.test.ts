import { writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { copyMigratedDatabase, genstore } from "./support/cli.ts";
import { tempDir } from "./support/pipeline-fixtures.ts";

// The CLI run in a Next.js app's folder reads the app's .env files as Next does, and says
// which database and storage it is about to use before `db migrate` touches anything.

/** An app's folder with these files, and a migrated embedded database in each home they name. */
async function appFolder(files: Record<string, string>): Promise<string> {
  const dir = await tempDir("genstore-envfiles-");
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  const homes = Object.values(files).flatMap((text) => [...text.matchAll(/^GENSTORE_HOME=(.*)$/gm)].map((m) => m[1]!));
  for (const home of new Set(homes)) await copyMigratedDatabase(path.join(dir, home));
  return dir;
}

describe("the .env files of the working directory", () => {
  it("are read in Next.js's order: .env.development.local, .env.local, .env.development, .env", async () => {
    const dir = await appFolder({
      ".env": "GENSTORE_HOME=from-env\nGENSTORE_STORAGE_DIR=outputs-from-env\nGENSTORE_OUTPUT_HOSTS=a.example\n",
      ".env.development": "GENSTORE_HOME=from-env-development\n",
      ".env.local": "GENSTORE_HOME=from-env-local\n",
      ".env.development.local": "",
    });
    const { stderr } = await genstore(["db", "status"], { NODE_ENV: "development" }, { cwd: dir });
    expect(stderr).toContain(
      `Using the embedded database in ${path.join(dir, "from-env-local", "db")}, local storage in ${path.join(dir, "outputs-from-env")}; settings from .env.development.local, .env.local, .env.development, .env.`,
    );
  }, 120_000);

  it("skip .env.local under NODE_ENV=test, read .env.production.local in production, and never override a set variable", async () => {
    const dir = await appFolder({
      ".env": "GENSTORE_HOME=from-env\n",
      ".env.local": "GENSTORE_HOME=from-env-local\n",
      ".env.production.local": "GENSTORE_HOME=from-env-production-local\nGENSTORE_STORAGE_DIR=not-this\n",
    });
    const test = await genstore(["db", "status"], { NODE_ENV: "test" }, { cwd: dir });
    expect(test.stderr).toContain(`embedded database in ${path.join(dir, "from-env", "db")}`);
    expect(test.stderr).toContain("settings from .env.");
    const production = await genstore(
      ["db", "status"],
      { NODE_ENV: "production", GENSTORE_STORAGE_DIR: path.join(dir, "set") },
      { cwd: dir },
    );
    expect(production.stderr).toContain(
      `embedded database in ${path.join(dir, "from-env-production-local", "db")}, local storage in ${path.join(dir, "set")};`,
    );
  }, 120_000);
});
