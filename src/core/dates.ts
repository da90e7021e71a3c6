// Date flags accept an ISO date or time (2026-11-20, 2026-11-20T10:00:00Z) or a duration
// back from now (90m, 24h, 7d, 2w), the way operators type them.

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

export function parseDateInput(text: string, now: Date = new Date()): Date | undefined {
  const trimmed = text.trim();
  const relative = /^(\d+)\s*([smhdw])$/.exec(trimmed);
  if (relative) {
    // Further back than a Date can go (99999999999d) is no date at all.
    const date = new Date(now.getTime() - Number(relative[1]) * UNITS[relative[2]!]!);
    return Number.isNaN(date.getTime()) ? undefined : date;
  }
  if (!/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(trimmed)) return undefined;
  // A bare date or a time without a zone is taken as UTC, so results do not depend on the machine.
  const iso = /^\d{4}-\d{2}-\d{2}$/.test(trimmed)
    ? `${trimmed}T00:00:00Z`
    : /Z|[+-]\d{2}:?\d{2}$/.test(trimmed)
      ? trimmed
      : `${trimmed}Z`;
  const date = new Date(iso.replace(" ", "T"));
  return Number.isNaN(date.getTime()) ? undefined : date;
}
