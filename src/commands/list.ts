import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { wholeNumber } from "./option-rules.ts";
import { parseDateInput } from "../core/dates.ts";
import { STORAGE_CONTEXTS } from "../core/operation.ts";
import { STATUSES } from "../core/status.ts";
import { runList } from "../jobs/list.ts";
import { renderGenerationTable } from "../ui/table.ts";

// `list`: src/jobs/list.ts reads the page; this file parses the filters and renders it.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("list")
    .description("List generations, newest first")
    .option("-u, --user <userId>", "only this user's generations")
    .option(
      "-c, --context <context>",
      "generated | edited | upscaled | videos (operationType column, else prompt prefix)",
    )
    .option("-s, --status <status...>", "starting | processing | succeeded | failed | canceled | aborted")
    .option("--since <date>", "created at or after: ISO date/time, or a duration back from now (24h, 7d)")
    .option("--until <date>", "created before: ISO date/time, or a duration back from now")
    .option("-n, --limit <n>", "rows per page (1-1000)", "50")
    .option("--after <id>", "start after this generation id (the cursor printed after a page)")
    .option("--json", "print one JSON array of rows (Prisma's field names) and nothing else")
    .addHelpText(
      "after",
      `
Examples:
  $ genstore list --context edited --user user_123
  $ genstore list --status failed --since 24h --json | jq '.[].replicateId'
  $ genstore list --limit 100 --after cmx3n36gb0000q87dpi7cyys1`,
    )
    .action(withContext(listAction, signal));
}

async function listAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const date = (text: string | undefined) => (text === undefined ? undefined : parseDateInput(text));
  const input = context.parse(options, (z) =>
    z.object({
      user: z.string().min(1).optional(),
      context: z.enum(STORAGE_CONTEXTS, { message: `must be one of ${STORAGE_CONTEXTS.join(", ")}` }).optional(),
      status: z.array(z.enum(STATUSES, { message: `must be one of ${STATUSES.join(", ")}` })).optional(),
      since: z
        .string()
        .optional()
        .refine((v) => v === undefined || date(v), "must be an ISO date or a duration such as 24h or 7d"),
      until: z
        .string()
        .optional()
        .refine((v) => v === undefined || date(v), "must be an ISO date or a duration such as 24h or 7d"),
      limit: wholeNumber(z, 1, 1000),
      after: z.string().min(1).optional(),
      json: z.boolean().optional(),
    }),
  );
  const output = context.output({ json: input.json });
  const db = await context.database();
  const result = await runList(
    {
      userId: input.user,
      context: input.context,
      statuses: input.status,
      since: date(input.since),
      until: date(input.until),
      after: input.after,
      limit: input.limit,
    },
    { db },
  );
  if (input.json) {
    output.printJson(result.rows);
    if (result.next) process.stderr.write(`next: --after ${result.next}\n`);
    return;
  }
  if (result.rows.length === 0) output.info("No generations match.");
  else output.print(renderGenerationTable(result.rows, output));
  if (result.next) output.info(`More rows: add --after ${result.next}`);
}
