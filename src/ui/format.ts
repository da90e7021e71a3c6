// Plain-text formatting shared by commands' summaries; no dependencies, so a command's
// module can import it statically without loading the terminal UI.

/** "generation 10,000, edit 2,000": the names with a non-zero count, in the record's order. */
export function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name} ${n.toLocaleString("en-US")}`)
    .join(", ");
}
