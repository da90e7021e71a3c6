// Waiting in tests is for a condition, never for a length of time: a busy machine makes a
// condition come later, not never.

/**
 * Polls until check() is truthy. The deadline only stops a condition that never comes; a
 * busy machine makes it come later, so callers keep the generous default.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 120_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
