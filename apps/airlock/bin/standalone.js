// The entry of the single-file executable (`npm run compile`, scripts/compile.mjs): `bun build
// --compile` bundles everything this imports, so it names the compiled CLI directly.
import { main } from "../dist/cli.js";
import { run } from "./run.js";

run(main);
