import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

// Where the schema engine's WebAssembly comes from when genstore runs from its sources
// (tests, `npm run dev`): straight from its package, which does not export the file.
// The bundle in dist/ replaces this module (scripts/build.mjs): the build copies the file
// beside the bundle and reads it as `new URL("./schema_engine_bg.wasm", import.meta.url)`,
// the form that bundlers and Next.js's output file tracing follow, with no path resolved
// at build time and none baked into a bundle.
export async function readSchemaEngineWasm(): Promise<Buffer<ArrayBuffer>> {
  const bindings = createRequire(import.meta.url).resolve("@prisma/schema-engine-wasm/schema_engine_bg");
  return readFile(bindings.replace(/\.js$/, ".wasm"));
}
