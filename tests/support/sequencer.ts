import { BaseSequencer, type TestSpecification } from "vitest/node";

// The longest files start first, so that on a fresh clone (no timing cache yet) the run does
// not end with one of them alone on a worker. Vitest's own order follows (its cache: failed,
// then slowest first).
const LONGEST_FIRST = [
  "nextjs-example.e2e",
  "attached.e2e",
  "migrate-keys.test",
  "gallery-browser",
  "recover-e2e",
  "migrate-keys.e2e",
  "library",
  "recover-run",
];

function rank(file: TestSpecification): number {
  const name = file.moduleId.split("/").at(-1)!;
  const index = LONGEST_FIRST.findIndex((prefix) => name.startsWith(`${prefix}.`));
  return index === -1 ? LONGEST_FIRST.length : index;
}

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    return sorted
      .map((file, order) => ({ file, order, rank: rank(file) }))
      .sort((a, b) => a.rank - b.rank || a.order - b.order)
      .map(({ file }) => file);
  }
}
