import type { Database } from "./client.ts";

// A query too big to hold, read batch by batch through a server-side cursor, in a read-only
// transaction on a connection of its own: PostgreSQL sorts once and streams, where keyset
// paging on a computed sort key (a key inside a jsonb array) would sort the table again
// for every page. On the embedded database the connection is the only one: nothing may
// open another transaction while the cursor is read (reads are fine).

let cursors = 0;

export async function* cursorBatches<T>(
  db: Database,
  sql: string,
  params: unknown[],
  batchSize = 2_000,
): AsyncGenerator<T[]> {
  const session = await db.session();
  const name = `genstore_cursor_${++cursors}`;
  let open = false;
  try {
    await session.query("BEGIN READ ONLY");
    open = true;
    // A scan's query is costed like an analytic one (unnest is guessed at ten rows a row), so
    // PostgreSQL would compile it first: 70 ms of JIT for a sort of 100,000 keys that takes
    // 270 ms, paid on every run and saving nothing.
    if (db.kind === "postgres") await session.query("SET LOCAL jit = off");
    await session.query(`DECLARE ${name} NO SCROLL CURSOR FOR ${sql}`, ...params);
    // The next batch is asked for while the caller works on this one.
    const fetch = () => {
      const next = session.query<T>(`FETCH ${batchSize} FROM ${name}`);
      next.catch(() => {}); // awaited below, or dropped when the caller stops early
      return next;
    };
    let next: Promise<T[]> | undefined = fetch();
    while (next !== undefined) {
      const rows: T[] = await next;
      next = rows.length < batchSize ? undefined : fetch();
      if (rows.length > 0) yield rows;
    }
  } finally {
    // COMMIT of a read-only transaction closes the cursor; on a lost connection there is nothing to end.
    if (open) await session.query("COMMIT").catch(() => {});
    await session.release();
  }
}
