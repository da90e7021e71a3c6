// Durations and dates as operators type them: the one parser for every flag and variable
// that takes a duration (--interval, --since, --older-than, GENSTORE_DELIVERY_RETENTION).
// A duration is a number and a unit (500ms, 5s, 1.5m, 24h, 7d, 2w); a date flag takes an
// ISO date or time (2026-11-20, 2026-11-20T10:00:00Z) or a duration back from now.

const UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
export type DurationUnit = keyof typeof UNITS;

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?$/;

/**
 * A duration as whole milliseconds, or undefined when text is not one. A bare number is
 * taken in `bareUnit` when given (--interval 5 means 5 s), and refused otherwise.
 */
export function parseDuration(text: string, options: { bareUnit?: DurationUnit } = {}): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const unit = (match[2] as DurationUnit | undefined) ?? options.bareUnit;
  if (unit === undefined) return undefined;
  const ms = Math.round(Number(match[1]) * UNITS[unit]);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Whether text is a duration back from now (24h, 7d) rather than a date. */
export function isRelativeDate(text: string | undefined): boolean {
  return text !== undefined && parseDuration(text) !== undefined;
}

export function parseDateInput(text: string, now: Date = new Date()): Date | undefined {
  const trimmed = text.trim();
  const ago = parseDuration(trimmed);
  if (ago !== undefined) {
    // Further back than a Date can go (99999999999d) is no date at all.
    const date = new Date(now.getTime() - ago);
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
