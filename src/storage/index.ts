import type { StorageConfig } from "../config.ts";
import { loadS3Storage } from "../lazy.ts";
import { createLocalStorage } from "./local.ts";
import type { Storage } from "./types.ts";

/**
 * The configured storage provider. Async because the S3 module is imported only when
 * asked for: the AWS SDK takes a noticeable time to load, and local runs never need it.
 */
export async function createStorage(config: StorageConfig): Promise<Storage> {
  if (config.provider === "local") return createLocalStorage(config.root);
  const { createS3Storage } = await loadS3Storage();
  return createS3Storage(config);
}
