// The heavy modules that only some runs need, each loaded on first use. Commands are
// loaded lazily by the command map in src/cli.ts; below a command, modules import
// statically, except for these: which of them a run needs is only known from its
// configuration (the database and storage providers) or its data (an image to thumbnail,
// a terminal to draw a spinner on, a migration to apply).

/** The PostgreSQL driver, for a database server. */
export const loadPg = () => import("pg").then((m) => m.default);

/** The embedded PostgreSQL (WebAssembly): only without DATABASE_URL. */
export const loadPGlite = () => import("@electric-sql/pglite").then((m) => m.PGlite);

/** Prisma's driver adapters, which its schema engine runs migrations through. */
export const loadPrismaAdapters = async () => {
  const [{ PrismaPg }, { PrismaPGlite }] = await Promise.all([
    import("@prisma/adapter-pg"),
    import("pglite-prisma-adapter"),
  ]);
  return { PrismaPg, PrismaPGlite };
};

/** Prisma's schema engine compiled to WebAssembly: only to apply migrations. */
export const loadSchemaEngine = () => import("./db/schema-engine.ts");

/** The AWS SDK takes a noticeable time to load, and local storage never needs it. */
export const loadS3Storage = () => import("./storage/s3.ts");

/** sharp is about 20 MB of native code: only an image output needs it. */
export const loadSharp = () => import("sharp").then((m) => m.default);

/** The spinner, only on a terminal. */
export const loadOra = () => import("ora").then((m) => m.default);
