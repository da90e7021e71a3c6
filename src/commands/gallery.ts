import type { Command } from "commander";
import { withContext, type Context } from "../app.ts";
import { wholeNumber } from "./option-rules.ts";
import { parseDuration } from "../core/dates.ts";
import { openBrowser } from "../gallery/open-browser.ts";
import { isLoopbackHost } from "../core/loopback.ts";
import { runGallery } from "../gallery/run.ts";
import { checkCanListen } from "../listen.ts";

// `gallery`: a local, read-only web page of the generations, with the app's tabs.

export function register(program: Command, signal: AbortSignal): void {
  program
    .command("gallery")
    .description("Browse the generations in a local, read-only web page (tabs, filters, details, media)")
    .option("-p, --port <port>", "port to listen on (0: any free port)", "5557")
    .option("--host <host>", "address to listen on; anything but loopback needs a token", "127.0.0.1")
    .option("--token <token>", "require this token (generated and printed once when --host is not loopback)")
    .option("--open", "open the page in the default browser")
    .option(
      "--counts-max-age <duration>",
      "how old the counts per tab may be before they are counted again (0s: always)",
      "10s",
    )
    .addHelpText(
      "after",
      `
The URL goes to stdout; Ctrl-C stops the server. Nothing is written: the server answers
GET and HEAD only. The counts per tab read every matching row, so each filter's counts are
kept for --counts-max-age (older ones are shown, with the time they were counted, while new
ones are counted). Local storage is streamed (ranges, so videos seek); S3 objects are
served through presigned URLs valid for 15 minutes.

Examples:
  $ genstore gallery --open
  $ genstore gallery --port 0 2>/dev/null          (stdout: the URL alone)
  $ genstore gallery --host 0.0.0.0                 (prints a URL with a generated token)`,
    )
    .action(withContext(galleryAction, signal));
}

async function galleryAction(options: Record<string, unknown>, context: Context): Promise<void> {
  const input = context.parse(options, (z) =>
    z.object({
      port: wholeNumber(z, 0, 65535),
      host: z.string().min(1),
      token: z.string().min(16, "must be at least 16 characters").optional(),
      open: z.boolean().optional(),
      countsMaxAge: z
        .string()
        .transform((v) => parseDuration(v))
        .refine((v) => v !== undefined, "must be a duration such as 10s, 1m or 0s"),
    }),
  );
  const output = context.output();
  await checkCanListen(input.port, input.host);
  const [db, storage] = await Promise.all([context.database(), context.storage()]);
  await runGallery(
    { ...input, countsMaxAgeMs: input.countsMaxAge },
    {
      db,
      storage,
      signal: context.signal,
      log: (line) => output.warn(line),
      onListening: ({ url, tokenGenerated }) => {
        output.print(url);
        if (tokenGenerated)
          output.warn(
            `Listening on ${input.host}, beyond this machine: the URL above carries a token generated for this run (shown once).`,
          );
        else if (!isLoopbackHost(input.host)) output.warn(`Listening on ${input.host}: every request needs the token.`);
        output.success(
          `Gallery of ${db.describe}, storage ${storage.provider} ${storage.bucket}. Read-only. Ctrl-C to stop.`,
        );
        if (input.open)
          openBrowser(url).catch((error: unknown) =>
            output.warn(`Could not open a browser: ${String(error)}. Open the URL above.`),
          );
      },
    },
  );
  output.info("Stopped.");
}
