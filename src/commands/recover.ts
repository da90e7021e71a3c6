import type { Command } from "commander";

// Placeholder: being built. Replace this whole file.
export function registerRecover(program: Command, _signal: AbortSignal): void {
  program
    .command("recover")
    .description("Fetch predictions from Replicate, store their outputs, create or repair their rows (not built yet)")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async () => {
      const { UserError, ExitCode } = await import("../errors.ts");
      throw new UserError("genstore recover is not built yet.", { exitCode: ExitCode.usage });
    });
}
