// Values that are slow to compute and may be a little old, such as the gallery's counts over
// a million rows: a value younger than freshMs is served as it is; an older one, up to
// maxStaleMs, is served at once while one load replaces it in the background
// (stale-while-revalidate); older than that, or absent, the caller waits for a load. One
// load per key at a time, shared by everyone who asks meanwhile.

export interface StaleCacheOptions {
  /** Served without a new load until this old. 0: every ask loads (asks at once share it). */
  freshMs: number;
  /** Served, while a new load runs, until this old; never less than freshMs. */
  maxStaleMs: number;
  /** Keys kept; the least recently asked goes first. */
  maxEntries: number;
  now?: () => number;
  /** A background load that failed: the old value stays, and the next ask tries again. */
  onBackgroundError?: (key: string, error: unknown) => void;
}

export interface Cached<T> {
  value: T;
  /** When the load that made it started (ms, the clock of `now`). */
  computedAt: number;
  /** "hit": fresh; "stale": older than freshMs, a new load is under way; "loaded": loaded for this ask. */
  source: "hit" | "stale" | "loaded";
}

export interface StaleCache<T> {
  get(key: string): Promise<Cached<T>>;
  /** Resolves once no load is under way (for a clean shutdown). */
  idle(): Promise<void>;
}

export function createStaleCache<T>(load: (key: string) => Promise<T>, options: StaleCacheOptions): StaleCache<T> {
  const now = options.now ?? Date.now;
  const maxStaleMs = Math.max(options.freshMs, options.maxStaleMs);
  const entries = new Map<string, { value: T; computedAt: number }>();
  const loading = new Map<string, Promise<{ value: T; computedAt: number }>>();

  function start(key: string): Promise<{ value: T; computedAt: number }> {
    const running = loading.get(key);
    if (running) return running;
    const computedAt = now();
    // A loader that throws instead of rejecting fails its ask (and the background's catch) the same way.
    const loaded = new Promise<T>((resolve) => resolve(load(key)))
      .then((value) => {
        const entry = { value, computedAt };
        remember(key, entry);
        return entry;
      })
      .finally(() => loading.delete(key));
    loading.set(key, loaded);
    return loaded;
  }

  function remember(key: string, entry: { value: T; computedAt: number }): void {
    entries.delete(key);
    entries.set(key, entry);
    while (entries.size > options.maxEntries) entries.delete(entries.keys().next().value!);
  }

  return {
    async get(key) {
      const entry = entries.get(key);
      const age = entry === undefined ? Infinity : now() - entry.computedAt;
      if (entry !== undefined && age < options.freshMs) {
        remember(key, entry);
        return { ...entry, source: "hit" };
      }
      if (entry !== undefined && age <= maxStaleMs && maxStaleMs > 0) {
        remember(key, entry);
        if (!loading.has(key)) start(key).catch((error: unknown) => options.onBackgroundError?.(key, error));
        return { ...entry, source: "stale" };
      }
      return { ...(await start(key)), source: "loaded" };
    },
    async idle() {
      while (loading.size > 0) await Promise.allSettled([...loading.values()]);
    },
  };
}
