#!/usr/bin/env node
// The airlock command. The TypeScript sources are compiled by `npm ci` (the root `prepare` script).
import { main } from "../dist/cli.js";

// A reader that stops early (`airlock inspect … | head`) is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err?.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`airlock: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  },
);
