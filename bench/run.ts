// `npm run bench`: every benchmark in turn (not part of the tests). Each prints its figures
// next to a reference measured in the same run.
import { execFileSync } from "node:child_process";

const only = process.argv.slice(2);
for (const name of [
  "startup",
  "list",
  "backfill",
  "webhook",
  "webhook-rss",
  "recover-rss",
  "migrate-keys",
  "nextjs-route",
  "gallery",
  "doctor",
]) {
  if (only.length > 0 && !only.includes(name)) continue;
  execFileSync(process.execPath, ["--import", "tsx", `bench/${name}.ts`], { stdio: "inherit" });
}
