import type { Command } from "commander";

// Placeholder: being built. Replace this whole file.
export function registerServeWebhook(program: Command, _signal: AbortSignal): void {
  program
    .command("serve-webhook")
    .description("Receive Replicate webhooks: verify, store durably, ingest (not built yet)")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async () => {
      const { UserError, ExitCode } = await import("../errors.ts");
      throw new UserError("genstore serve-webhook is not built yet.", { exitCode: ExitCode.usage });
    });
}
