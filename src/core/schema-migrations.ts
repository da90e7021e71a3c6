// Compares the migrations folder with the database's _prisma_migrations table, so that a
// command can tell in one query whether the schema is current without loading the schema
// engine (which takes about a second).

export interface LocalMigration {
  name: string;
  /** sha256 hex of migration.sql, as Prisma records it. */
  checksum: string;
}

export interface AppliedMigration {
  name: string;
  checksum: string;
  finished: boolean;
  rolledBack: boolean;
}

export interface MigrationState {
  applied: string[];
  pending: string[];
  /** Started but never finished: someone must look before anything else runs. */
  failed: string[];
  /** Applied, but the file changed since. */
  edited: string[];
  /** In the database, not in the folder: the database is newer than this genstore. */
  unknown: string[];
  upToDate: boolean;
}

export function compareMigrations(local: LocalMigration[], applied: AppliedMigration[]): MigrationState {
  const live = applied.filter((m) => !m.rolledBack);
  const finished = new Map(live.filter((m) => m.finished).map((m) => [m.name, m]));
  const failed = live.filter((m) => !m.finished).map((m) => m.name);
  const localNames = new Set(local.map((m) => m.name));
  const state: MigrationState = {
    applied: local.filter((m) => finished.has(m.name)).map((m) => m.name),
    pending: local.filter((m) => !finished.has(m.name) && !failed.includes(m.name)).map((m) => m.name),
    failed,
    edited: local
      .filter((m) => finished.has(m.name) && finished.get(m.name)!.checksum !== m.checksum)
      .map((m) => m.name),
    unknown: [...finished.keys()].filter((name) => !localNames.has(name)),
    upToDate: false,
  };
  state.upToDate = state.pending.length === 0 && state.failed.length === 0 && state.unknown.length === 0;
  return state;
}
