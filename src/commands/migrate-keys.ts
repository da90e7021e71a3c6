import type { Command } from "commander";

// Placeholder: being built. Replace this whole file.
export function registerMigrateKeys(program: Command, _signal: AbortSignal): void {
  program
    .command("migrate-keys")
    .description("Move legacy storage keys into the context folders (not built yet)")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async () => {
      const { UserError, ExitCode } = await import("../errors.ts");
      throw new UserError("genstore migrate-keys is not built yet.", { exitCode: ExitCode.usage });
    });
}
