// Run as a child process by tests/pipeline-memory.test.ts (and usable by hand):
//   node --import tsx tests/support/pipeline-memory-child.ts <pglite-template.tar> <output-url> <host-entry> <storage-dir>
// Ingests one prediction whose output is <output-url> into local storage on an in-memory
// PGlite, and prints one JSON line: the stored size, the resident memory before the ingest,
// and the peak resident memory during it (VmHWM, reset just before by /proc/self/clear_refs).
import { readFile, writeFile } from "node:fs/promises";
import { PGlite } from "@electric-sql/pglite";
import { parsePrediction } from "../../src/core/prediction.ts";
import { databaseFromPGlite } from "../../src/db/client.ts";
import { ingestPrediction } from "../../src/pipeline/ingest.ts";
import { createLocalStorage } from "../../src/storage/local.ts";

const [templatePath, outputUrl, hostEntry, storageDir] = process.argv.slice(2);
if (!templatePath || !outputUrl || !hostEntry || !storageDir) {
  console.error("usage: pipeline-memory-child.ts <pglite-template.tar> <output-url> <host-entry> <storage-dir>");
  process.exit(2);
}

function status(field: "VmRSS" | "VmHWM"): Promise<number> {
  return readFile("/proc/self/status", "utf8").then(
    (text) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)![1]) * 1024,
  );
}

const pglite = await PGlite.create({ loadDataDir: new Blob([await readFile(templatePath)]) });
const db = await databaseFromPGlite(pglite, "the memory test database");
const storage = createLocalStorage(storageDir);
const deps = { db, storage, config: { outputHosts: [hostEntry], maxOutputBytes: 1024 ** 3 } };
const prediction = (id: string, url: string) => {
  const parsed = parsePrediction({
    id,
    status: "succeeded",
    input: { prompt: "[VIDEO] memory", user_id: "mem" },
    output: url,
  });
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.prediction;
};

// Warm up: every module and code path loaded, the database's caches filled.
await ingestPrediction(deps, {
  prediction: prediction("warmup", outputUrl.replace(/\/bytes\/\d+\//, "/bytes/1048576/")),
  via: "recover",
});
global.gc?.();
const before = await status("VmRSS");
await writeFile("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
const started = Date.now();
const result = await ingestPrediction(deps, { prediction: prediction("big", outputUrl), via: "recover" });
const seconds = (Date.now() - started) / 1000;
const peak = await status("VmHWM");
await db.close();
console.log(
  JSON.stringify({ stored: result.stored.map((s) => ({ key: s.key, size: s.size })), before, peak, seconds }),
);
