import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { STATUSES } from "../core/status.ts";
import { renderTrigger, reportSending, triggerError } from "../ui/trigger-render.ts";
import { DEFAULT_TRIGGER_URL, runTrigger } from "../webhook/trigger.ts";

// `trigger`: send a correctly signed sample prediction webhook to a receiver (like
// `stripe trigger`), to test a deployment end to end. The work is in src/webhook/trigger.ts,
// what it shows in src/ui/trigger-render.ts.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("trigger")
    .description("Send a signed sample prediction webhook to a receiver and print its answer")
    .option("--url <url>", "the receiver's webhook URL", DEFAULT_TRIGGER_URL)
    .option("-s, --status <status>", "starting | processing | succeeded | failed | canceled | aborted", "succeeded")
    .option(
      "--prompt <prompt>",
      "input.prompt (its prefix picks the folder: [EDITED], [UPSCALED], [VIDEO])",
      "a red fox in snow (sent by genstore trigger)",
    )
    .option(
      "-o, --output <url...>",
      "output URLs (default: one made-up replicate.delivery URL, which the receiver records as expired)",
    )
    .option("-u, --user <userId>", "added to the URL as ?userId= (places a prediction that has no row)")
    .option("--id <predictionId>", "the prediction id (default: a random one)")
    .option("--secret <whsec>", "signing secret (default: REPLICATE_WEBHOOK_SECRET)")
    .option("--json", "print one JSON document: what was sent and the answer")
    .addHelpText(
      "after",
      `
Exit codes: 0 the receiver answered 2xx; 8 it refused the delivery (4xx: a different secret, a
bad body); 6 it failed (5xx) or could not be reached; 3 no secret.

Examples:
  $ genstore trigger
  $ genstore trigger --prompt "[VIDEO] a fox running" --user user_123
  $ genstore trigger --status failed --url https://app.example.com/api/webhooks/replicate
  $ genstore trigger --output https://replicate.delivery/xezq/abc/out-0.webp --json`,
    )
    .action(withContext(triggerAction, signal));
}

async function triggerAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) =>
    z.object({
      url: z.url({ protocol: /^https?$/, message: "must be an http(s) URL" }),
      status: z.enum(STATUSES, { message: `must be one of ${STATUSES.join(", ")}` }),
      prompt: z.string(),
      output: z.array(z.url({ message: "must be a URL" })).optional(),
      user: z.string().min(1).optional(),
      id: z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,100}$/, "must be letters, digits, _ or -")
        .optional(),
      secret: z
        .string()
        .regex(/^whsec_[A-Za-z0-9+/=]+$/, "must look like whsec_<base64>")
        .optional(),
      json: z.boolean().optional(),
    }),
  );
  const output = context.output({ json: input.json });
  const result = await runTrigger(
    { ...input, outputs: input.output, secret: input.secret ?? context.config().webhookSecret },
    { signal: context.signal, onSend: reportSending(output, input.url) },
  );
  renderTrigger(result, output);
  const error = triggerError(result);
  if (error) throw error;
}
