import { ExitCode, UserError } from "../errors.ts";
import type { TriggerResult } from "../webhook/trigger.ts";
import type { Output } from "./output.ts";

// What `genstore trigger` shows: what it sends and the answer's status on stderr, the
// answer's body on stdout (or one JSON document: what was sent and the answer), and the
// error that carries the exit code when the receiver did not answer 2xx.

export function reportSending(output: Output, url: string): (prediction: Record<string, unknown>) => void {
  return (prediction) =>
    output.info(`→ POST ${url}: prediction ${String(prediction.id)} (${String(prediction.status)}), signed`);
}

export function renderTrigger(result: TriggerResult & { sent: Record<string, unknown> }, output: Output): void {
  if (output.json) return output.printJson(result);
  output.info(`← ${result.status} ${result.statusText} (webhook-id ${result.webhookId})`);
  output.print(typeof result.body === "string" ? result.body : JSON.stringify(result.body));
}

/** Undefined for a 2xx; else exit 8 when the receiver refused the delivery (4xx), 6 when it failed. */
export function triggerError(result: TriggerResult): UserError | undefined {
  if (result.status >= 200 && result.status < 300) return undefined;
  const refused = result.status >= 400 && result.status < 500;
  return new UserError(
    `The receiver answered ${result.status} ${result.statusText}${refused ? ": it refused the delivery" : ""}.`,
    {
      exitCode: refused ? ExitCode.refused : ExitCode.replicate,
      hint:
        result.status === 401
          ? "Its REPLICATE_WEBHOOK_SECRET differs from the one trigger signed with (or the clocks differ by over 5 minutes)."
          : undefined,
    },
  );
}
