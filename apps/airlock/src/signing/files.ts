/**
 * Reading the files the signing flags name: OpenPGP key files and passphrase files. Secrets are
 * never echoed: messages name the file, never its content.
 */
import { readFile } from "node:fs/promises";
import { AirlockError } from "@airlock/core";

/**
 * Reads a key file (armored or binary OpenPGP, as `gpg --export[-secret-keys] [--armor]` writes
 * it). `flag` names the option in messages. Throws ERR_INVALID_ARGUMENT when it cannot be read.
 */
export async function readKeyFile(path: string, flag: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read the key file ${path} (${flag}): ${(cause as Error).message}`, { cause });
  }
}

/**
 * Reads a passphrase file as containers/common does: the first line, without its line ending.
 * Throws ERR_INVALID_ARGUMENT when it cannot be read.
 */
export async function readPassphraseFile(path: string, flag: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read the passphrase file ${path} (${flag}): ${(cause as Error).message}`, { cause });
  }
  return (text.split("\n", 1)[0] as string).replace(/\r$/, "");
}
