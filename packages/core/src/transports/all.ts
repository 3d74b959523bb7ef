/**
 * Registers every built-in transport. Import this module once (the CLI and tests do) before
 * calling `parseImageName`.
 */
import { registerTransport } from "./index.js";

// Each transport folder exports its Transport object from transport.ts; register it here.
const builtins: Parameters<typeof registerTransport>[0][] = [];

for (const t of builtins) registerTransport(t);
