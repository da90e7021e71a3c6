import { FINDING_CLASSES, FINDING_KINDS, type Finding, type FindingKind } from "../core/doctor.ts";
import { ExitCode, UserError } from "../errors.ts";
import type { DoctorProgress, DoctorResult, RepairOutcome } from "../jobs/doctor.ts";
import { JsonArraySpool } from "./json-spool.ts";
import { formatDuration, formatRate, type Output } from "./output.ts";
import { renderTable } from "./table.ts";

// How `genstore doctor` shows its work. For people: a progress line with rate and ETA on
// stderr, then a table by finding with the first few examples of each, the repairs that did
// not succeed, and a summary line on stdout. --json: one document once the run has ended
// (findings spooled to a temporary file meanwhile: there can be millions), nothing when it
// fails. --ndjson: one line per finding and per repair as they come, then a summary line.

export interface DoctorView {
  onFinding: (finding: Finding) => void;
  onRepair: (outcome: RepairOutcome) => void;
  onProgress: (progress: DoctorProgress) => void;
  /** Prints the result; throws the problems error (exit 10) when problems remain. */
  finish: (result: DoctorResult) => Promise<void>;
  close: () => void;
}

export async function doctorView(output: Output, options: { ndjson?: boolean }): Promise<DoctorView> {
  const spool = output.json && !options.ndjson ? new JsonArraySpool() : undefined;
  const repairs: RepairOutcome[] = [];
  const progress = await output.progress("Checking…");
  let finished = false;
  const unit = { rows: "rows", objects: "keys", deliveries: "deliveries", repair: "repairs" } as const;
  return {
    onFinding: (finding) => {
      if (options.ndjson) output.printJsonLine({ type: "finding", ...finding });
      else spool?.add(finding);
    },
    onRepair: (outcome) => {
      if (options.ndjson) output.printJsonLine({ type: "repair", ...outcome });
      else if (output.json) repairs.push(outcome);
      else if (outcome.state === "not-repaired" || outcome.state === "lost") {
        repairs.push(outcome);
      }
    },
    // Without a terminal there is no progress line: not even its text is made.
    onProgress: (p) =>
      output.interactive &&
      progress.update(
        `Checking ${p.phase === "objects" ? "stored keys against the storage listing" : p.phase}: ${formatRate(p.done, p.total, p.startedAt, unit[p.phase])}`,
      ),
    finish: async (result) => {
      finished = true;
      progress.done();
      const document = { ...result, examples: undefined };
      if (options.ndjson) output.printJsonLine({ type: "summary", ...document });
      else if (spool) await output.printJsonDocument(spool, "findings", { ...document, repairs });
      else {
        output.print(doctorTable(result, output));
        for (const line of exampleLines(result)) output.print(line);
        for (const r of repairs) output.print(repairLine(r));
        output.print(doctorSummaryLine(result));
      }
      for (const note of result.notes) output.info(note);
      const error = doctorError(result);
      if (error) throw error;
    },
    close: () => {
      if (!finished) progress.fail();
      spool?.discard();
    },
  };
}

export function doctorTable(result: DoctorResult, output: Output): string {
  const head = [
    "finding",
    "found",
    ...(result.repair ? [result.dryRun ? "would repair" : "repaired"] : []),
    "--repair does",
  ];
  const rows = FINDING_KINDS.filter((k) => result.counts[k] > 0).map((kind) => [
    FINDING_CLASSES[kind].label,
    n(result.counts[kind]),
    ...(result.repair ? [n(result.repaired[kind])] : []),
    FINDING_CLASSES[kind].repair,
  ]);
  if (rows.length === 0) return "No findings.";
  return renderTable(head, rows, output);
}

function exampleLines(result: DoctorResult): string[] {
  const lines: string[] = [];
  for (const kind of FINDING_KINDS) {
    const examples = result.examples[kind];
    if (examples.length === 0) continue;
    const more = result.counts[kind] - examples.length;
    lines.push(
      `${FINDING_CLASSES[kind].label}${more > 0 ? ` (first ${examples.length} of ${n(result.counts[kind])})` : ""}:`,
    );
    for (const finding of examples) lines.push(`  ${findingLine(finding)}`);
  }
  return lines;
}

/** "generated/u1/g1_0.png (generation g1, prediction p1): absent in storage" */
export function findingLine(finding: Finding): string {
  const what =
    finding.key ?? (finding.deliveryId ? `delivery ${finding.deliveryId}` : `generation ${finding.generationId}`);
  const about = [
    finding.key !== undefined && finding.generationId ? `generation ${finding.generationId}` : "",
    finding.replicateId ? `prediction ${finding.replicateId}` : "",
  ].filter(Boolean);
  return `${what}${about.length > 0 ? ` (${about.join(", ")})` : ""}: ${finding.detail}`;
}

function repairLine(r: RepairOutcome): string {
  const what = r.key ?? (r.deliveryId ? `delivery ${r.deliveryId}` : `generation ${r.generationId}`);
  return `${r.state === "lost" ? "lost" : "not repaired"}  ${FINDING_CLASSES[r.kind].label}  ${what}: ${r.detail}`;
}

export function doctorSummaryLine(result: DoctorResult): string {
  const checked = `Checked ${plural(result.rows, "row")}, ${plural(result.keys, "stored key")} and ${plural(result.objects, "object")} in ${formatDuration(result.durationMs / 1000)}`;
  const found = problems(result.counts);
  if (!result.repair) return `${checked}: ${found === "" ? "everything is accounted for." : `${found}.`}`;
  const fixed = Object.values(result.repaired).reduce((a, b) => a + b, 0);
  if (result.dryRun)
    return `${checked}: ${found || "nothing to repair"}. Dry run: ${plural(fixed, "finding")} would be repaired; nothing was changed.`;
  const left = result.remaining === 0 ? "nothing is left" : `${plural(result.remaining, "problem")} left`;
  const lost = result.markedLost > 0 ? `, ${n(result.markedLost)} recorded as lost` : "";
  return `${checked}: ${found || "nothing to repair"}. Repaired ${n(fixed)}${lost}; ${left}.`;
}

function problems(counts: Record<FindingKind, number>): string {
  return FINDING_KINDS.filter((k) => FINDING_CLASSES[k].problem && counts[k] > 0)
    .map((k) => `${n(counts[k])} ${FINDING_CLASSES[k].label}`)
    .join(", ");
}

export function doctorError(result: DoctorResult): UserError | undefined {
  if (result.remaining === 0) return undefined;
  return new UserError(
    `${plural(result.remaining, "problem")} ${result.remaining === 1 ? "remains" : "remain"}${result.repair && !result.dryRun ? " after the repairs" : ""}.`,
    {
      exitCode: ExitCode.problems,
      hint: result.repair
        ? "The lines above say why each was not repaired."
        : "Run genstore doctor --repair to repair what can be.",
    },
  );
}

function n(value: number): string {
  return value.toLocaleString("en-US");
}

function plural(value: number, word: string): string {
  return `${n(value)} ${word}${value === 1 ? "" : "s"}`;
}
