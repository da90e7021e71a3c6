import type { Database } from "../db/client.ts";

// One run of a job at a time per database. On PostgreSQL: a session-level advisory lock
// held on a dedicated connection for the whole run. The server releases it when that
// connection ends, so a crashed or killed run never leaves a stale lock behind, and
// nothing is written to any table. The lock key is the job's name and genstore's schema,
// so genstore installs in different schemas of one database do not block each other.
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
export async function acquireJobLock(job: string, db: Database): Promise<JobLock> {
  if (db.kind === "embedded") return acquireEmbedded(job, db);
  const session = await db.session();
  const key = `genstore:${job}:${db.schema}`;
  let held = false;
  try {
    const [row] = await session.query<{ locked: boolean }>(
      `SELECT pg_try_advisory_lock($1::int, hashtext($2)) AS locked`,
      LOCK_NAMESPACE,
      key,
    );
    held = row?.locked === true;
  } finally {
    if (!held) await session.release();
  }
  if (!held) throw new JobLockBusy(key);
  let released = false;
  return {
    lost: session.lost,
    release: async () => {
      if (released) return;
      released = true;
      // Ending the session releases the lock too; the explicit unlock just says so sooner.
      await session.query(`SELECT pg_advisory_unlock($1::int, hashtext($2))`, LOCK_NAMESPACE, key).catch(() => {});
      await session.release();
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
