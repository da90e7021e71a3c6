import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { STATUSES } from "../core/status.ts";
import { ConfigError, ExitCode, UserError } from "../errors.ts";
import { buildSamplePrediction, sendTrigger } from "../webhook/trigger.ts";

// `trigger`: send a correctly signed sample prediction webhook to a receiver (like
// `stripe trigger`), to test a deployment end to end. Prints the receiver's answer.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("trigger")
    .description("Send a signed sample prediction webhook to a receiver and print its answer")
    .option("--url <url>", "the receiver's webhook URL", "http://127.0.0.1:3000/api/webhooks/replicate")
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
  const secret = input.secret ?? context.config().webhookSecret;
  if (!secret) {
    throw new ConfigError(
      "Missing configuration: REPLICATE_WEBHOOK_SECRET (trigger signs the sample with it).",
      "Set it, or pass --secret whsec_…; it must be the receiver's secret.",
    );
  }
  const prediction = buildSamplePrediction({
    status: input.status,
    prompt: input.prompt,
    outputs: input.output,
    id: input.id,
  });
  output.info(`→ POST ${input.url}: prediction ${prediction.id as string} (${input.status}), signed`);
  let result;
  try {
    result = await sendTrigger({
      url: input.url,
      secret,
      prediction,
      user: input.user,
      signal: AbortSignal.any([context.signal, AbortSignal.timeout(30_000)]),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new UserError(`Cannot reach the receiver at ${input.url}: ${reason}.`, {
      exitCode: ExitCode.replicate,
      hint: "Start it with `genstore serve-webhook` (or check --url), then run trigger again.",
    });
  }
  if (input.json) output.printJson({ sent: prediction, ...result });
  else {
    output.info(`← ${result.status} ${result.statusText} (webhook-id ${result.webhookId})`);
    output.print(typeof result.body === "string" ? result.body : JSON.stringify(result.body));
  }
  if (result.status >= 200 && result.status < 300) return;
  const refused = result.status >= 400 && result.status < 500;
  throw new UserError(
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
