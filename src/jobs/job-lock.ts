import type { DatabaseConfig } from "../config.ts";
import type { Database } from "../db/client.ts";

// One run of a job at a time per database. On PostgreSQL: a session-level advisory lock
// held on a dedicated connection for the whole run. The server releases it when that
// connection ends, so a crashed or killed run never leaves a stale lock behind, and
// nothing is written to any table. The lock key is the job's name and the schema, so
// genstore installs in different schemas of one database do not block each other.
//
// The embedded database (PGlite) lives in one process: the lock is held in memory, per
// open database.

export interface JobLock {
  /** Aborted when the lock is lost (its connection dropped): the run must stop. */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

/** classid of genstore's advisory locks: "gens" in ASCII. */
const LOCK_NAMESPACE = 0x67656e73;

const embeddedLocks = new WeakMap<Database, Set<string>>();

export class JobLockBusy extends Error {
  override name = "JobLockBusy";
}

/** Takes the job's lock or throws JobLockBusy when another run holds it. */
export async function acquireJobLock(job: string, db: Database, config: DatabaseConfig): Promise<JobLock> {
  if (config.kind === "embedded" || db.kind === "embedded") return acquireEmbedded(job, db);
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: config.url, connectionTimeoutMillis: 10_000 });
  const lost = new AbortController();
  client.on("error", (error) => lost.abort(error));
  client.on("end", () => lost.abort(new Error("the lock's database connection ended")));
  await client.connect();
  const key = `genstore:${job}:${config.schema ?? "public"}`;
  let held = false;
  try {
    const { rows } = await client.query<{ locked: boolean }>(
      `SELECT pg_try_advisory_lock($1::int, hashtext($2)) AS locked`,
      [LOCK_NAMESPACE, key],
    );
    held = rows[0]?.locked === true;
  } finally {
    if (!held) await client.end().catch(() => {});
  }
  if (!held) throw new JobLockBusy(key);
  let released = false;
  return {
    lost: lost.signal,
    release: async () => {
      if (released) return;
      released = true;
      client.removeAllListeners("end");
      // Ending the session releases the lock too; the explicit unlock just says so sooner.
      await client.query(`SELECT pg_advisory_unlock($1::int, hashtext($2))`, [LOCK_NAMESPACE, key]).catch(() => {});
      await client.end().catch(() => {});
    },
  };
}

function acquireEmbedded(job: string, db: Database): JobLock {
  let held = embeddedLocks.get(db);
  if (!held) embeddedLocks.set(db, (held = new Set()));
  if (held.has(job)) throw new JobLockBusy(`genstore:${job}`);
  held.add(job);
  const set = held;
  return {
    lost: new AbortController().signal,
    release: async () => {
      set.delete(job);
    },
  };
}
