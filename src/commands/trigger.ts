import type { Command } from "commander";

// Placeholder: being built. Replace this whole file.
export function registerTrigger(program: Command, _signal: AbortSignal): void {
  program
    .command("trigger")
    .description("Send a signed sample prediction webhook to a receiver (not built yet)")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async () => {
      const { UserError, ExitCode } = await import("../errors.ts");
      throw new UserError("genstore trigger is not built yet.", { exitCode: ExitCode.usage });
    });
}
