// `npm run dev -- <command> [flags]`: the CLI from the sources through tsx, for developers
// (no build needed). The installed binary, bin/genstore, only ever runs dist/.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv);
