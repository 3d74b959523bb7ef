#!/usr/bin/env node
// The airlock command. The TypeScript sources are compiled by `npm ci` (the root `prepare` script).
import { main } from "../dist/cli.js";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`airlock: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  },
);
