import {
  bindMigrationAwareSqlAdapterFactory,
  type SqlMigrationAwareDriverAdapterFactory,
} from "@prisma/driver-adapter-utils";
import { readSchemaEngineWasm } from "./schema-engine-wasm.ts";

// The Prisma CLI's migrate commands need a native schema-engine binary that cannot be
// downloaded here; the same engine compiled to WebAssembly runs through the driver
// adapter the client already uses. The package is built for bundlers, so it is
// instantiated by hand (see DEVELOPERS.md).

export interface WasmSchemaEngine {
  diff(params: unknown): Promise<{ exitCode: number; stdout?: string }>;
  applyMigrations(input: unknown): Promise<{ appliedMigrationNames: string[] }>;
  diagnoseMigrationHistory(input: unknown): Promise<DiagnoseOutput>;
  free(): void;
}

export interface DiagnoseOutput {
  editedMigrationNames: string[];
  failedMigrationNames: string[];
  hasMigrationsTable: boolean;
  history: null | { diagnostic: string; [key: string]: unknown };
}

let loaded: Promise<typeof import("@prisma/schema-engine-wasm/schema_engine_bg")> | undefined;

function loadBindings() {
  loaded ??= (async () => {
    const bindings = await import("@prisma/schema-engine-wasm/schema_engine_bg");
    const imports: Record<string, unknown> = { ...bindings };
    for (const name of Object.keys(imports)) {
      // The engine arms timers it never clears; unref them so the process can exit.
      if (name.startsWith("__wbg_setTimeout_")) {
        const original = imports[name] as (cb: () => void, ms: number) => NodeJS.Timeout;
        imports[name] = (cb: () => void, ms: number) => {
          const timer = original(cb, ms);
          timer.unref?.();
          return timer;
        };
      }
    }
    const { instance } = await WebAssembly.instantiate(await readSchemaEngineWasm(), {
      "./schema_engine_bg.js": imports as WebAssembly.ModuleImports,
    });
    bindings.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return bindings;
  })();
  return loaded;
}

export async function createSchemaEngine(
  factory: SqlMigrationAwareDriverAdapterFactory,
  schemaPath: string,
  schemaText: string,
  log: (message: string) => void = () => {},
): Promise<WasmSchemaEngine> {
  const bindings = await loadBindings();
  // The engine expects the Result-wrapped form of the adapter (as Prisma's CLI passes it),
  // and calls its methods detached from their object.
  const adapter = bindMigrationAwareSqlAdapterFactory(factory);
  const engine = await bindings.SchemaEngine.new(
    { datamodels: [[schemaPath, schemaText]] },
    (message: string) => log(message),
    adapter,
  );
  return engine as unknown as WasmSchemaEngine;
}
