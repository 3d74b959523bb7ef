/**
 * Deltas: receipts of what the air-gapped side holds, and the bases a delta export is cut against.
 */
export { baseFromManifests, loadDeltaBase } from "./base.js";
export { baseSetDigest, type DeltaBase, type InventoryOptions, parseReceipt, RECEIPT_MEDIA_TYPE, type Receipt, type ReceiptRepository, splitRegistryTarget, takeInventory, writeReceipt } from "./receipt.js";
