// Runs airlock's main() as this process: argv in, exit code out. Shared by the command
// (airlock.js) and the single-file executable's entry (standalone.js).

/**
 * run is the process around main(): it passes the arguments, sets the exit code, and treats a
 * reader that stops early (`airlock inspect … | head`) as no error.
 */
export function run(main) {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err) => {
      if (err?.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  // Once the loop is empty, every write, rename and socket of the run is finished: leave right
  // away. A natural exit would go on to free the whole heap and environment first, which costs Node
  // tens of milliseconds per run — paid once per image by a script that runs airlock per image.
  process.once("beforeExit", () => process.exit());
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`airlock: ${err?.stack ?? err}\n`);
      process.exitCode = 1;
    },
  );
}
