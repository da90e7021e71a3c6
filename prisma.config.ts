import { defineConfig } from "prisma/config";

// Only `prisma generate` (and, where its binary can be downloaded, `prisma migrate deploy`)
// reads this file; genstore itself resolves the database in src/config.ts.
export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://localhost:5432/genstore" },
});
