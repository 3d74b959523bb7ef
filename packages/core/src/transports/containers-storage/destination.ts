/** placeholder */
import { AirlockError } from "../../errors.js";
import type { ImageDestination, SystemContext } from "../types.js";
import type { StorageReference } from "./reference.js";

/** Writes an image into a containers/storage store. */
export class StorageImageDestination {
  /** Opens the store for writing. */
  static async open(ref: StorageReference, _ctx?: SystemContext): Promise<ImageDestination> {
    throw new AirlockError("ERR_UNSUPPORTED", `${ref}: not yet`);
  }
}
