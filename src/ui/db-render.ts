import type { TableCheck } from "../core/table-check.ts";
import type { DbStatus, GenerationsInUse } from "../jobs/db.ts";
import type { MigrateResult } from "../db/migrations.ts";
import type { Output } from "./output.ts";

// How `db migrate`, `db status` and `db check` show their results (or one JSON document).

function generationsLine(g: GenerationsInUse): string {
  const whose = g.mode === "owned" ? "genstore's own" : "the app's, attached";
  return `Generations table: ${g.table} (${whose})${g.exists ? "" : ", does not exist yet"}`;
}

export function renderDbMigrate(
  result: MigrateResult & { database: string; schema: string; generations: GenerationsInUse },
  output: Output,
): void {
  if (output.json) return output.printJson(result);
  if (result.moved.length > 0)
    output.success(`Moved genstore's tables into schema ${result.schema}: ${result.moved.join(", ")} (rows kept).`);
  if (result.applied.length === 0) output.success(`${result.database}: schema ${result.schema} is already up to date.`);
  else
    output.success(
      `Applied ${result.applied.length} migration(s) to schema ${result.schema} of ${result.database}: ${result.applied.join(", ")}`,
    );
  output.print(generationsLine(result.generations));
}

export function renderDbStatus(status: DbStatus, output: Output): void {
  if (output.json) return output.printJson(status);
  output.print(`Database: ${status.database}`);
  output.print(`genstore's schema: ${status.schema}`);
  output.print(generationsLine(status.generations));
  if (status.legacy)
    output.print(
      `  legacy   genstore's tables are in schema ${status.legacy.schema} (genstore 0.1): db migrate moves them into ${status.schema}`,
    );
  for (const name of status.applied) output.print(`  applied  ${name}`);
  for (const name of status.pending) output.print(`  pending  ${name}`);
  for (const name of status.failed) output.print(`  FAILED   ${name}`);
  for (const name of status.unknown) output.print(`  unknown  ${name} (not in this genstore's migrations)`);
  for (const name of status.edited) output.print(`  edited   ${name} (changed since it was applied)`);
  output.print(status.upToDate ? "Up to date." : "Not up to date: run `genstore db migrate`.");
}

export function renderDbCheck(check: TableCheck & { database: string; exists: boolean }, output: Output): void {
  if (output.json) return output.printJson(check);
  const c = output.stdoutColor;
  output.print(`Database: ${check.database}`);
  output.print(
    `Generations table: ${check.table} (${check.mode === "owned" ? "genstore's own" : "the app's, attached"})`,
  );
  if (!check.exists) return;
  output.print("");
  output.print("Fields:");
  for (const f of check.fields) {
    const state =
      f.state === "found"
        ? c.green("found")
        : f.state === "missing"
          ? f.optional
            ? c.yellow("missing")
            : c.red("missing")
          : c.red("wrong type");
    const column = f.column === f.field ? "" : ` (column ${f.column})`;
    const detail =
      f.state === "wrong-type"
        ? `: is ${f.type}, needs ${f.expected}`
        : f.state === "missing"
          ? f.optional
            ? ": optional, kept in metadata"
            : `: required, ${f.expected}`
          : ` ${c.dim(f.type ?? "")}`;
    output.print(`  ${f.field.padEnd(16)}${state}${column}${detail}`);
  }
  output.print("");
  output.print(`Status (${check.status.type}):`);
  for (const [status, value] of Object.entries(check.status.mapping))
    output.print(
      `  ${status.padEnd(11)} → ${value}${check.status.invalidValues.includes(value) ? c.red("  not a value of the enum") : ""}`,
    );
  if (check.status.unmappedAppValues.length > 0)
    output.print(`  ${c.yellow("unmapped")}: ${check.status.unmappedAppValues.join(", ")}`);
  output.print("");
  output.print(
    `Prediction id (${check.fields.find((f) => f.field === "replicateId")?.column}): ${check.predictionIdUnique ? c.green("unique") : c.yellow("not unique")}`,
  );
  output.print("");
  output.print("Indexes:");
  for (const i of check.indexes) output.print(`  ${i.present ? c.green("present") : c.yellow("missing")}  ${i.serves}`);
  const missing = check.indexes.filter((i) => !i.present);
  if (missing.length > 0) {
    output.print("");
    output.print("To add them (genstore never runs these):");
    for (const i of missing) output.print(`  ${i.create}`);
  }
  if (check.prismaLines.length > 0) {
    output.print("");
    output.print(
      "Lines for the app's schema.prisma (model of this table), then `prisma migrate dev` or `prisma db push`:",
    );
    for (const line of check.prismaLines) output.print(line);
  }
  if (check.warnings.length > 0) {
    output.print("");
    for (const w of check.warnings) output.warn(w);
  }
  output.print("");
  output.print(
    check.usable ? c.green("genstore can use this table.") : c.red("genstore cannot use this table as configured."),
  );
}
