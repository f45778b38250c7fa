/**
 * Publishes an all-zero image version straight into a coordinator's image
 * service: a real manifest and commit, with no chunk to upload (zero chunks
 * are never stored), for tests that only need a version to exist.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildManifest } from '../../chunker/build-manifest.ts'
import type { ImageService } from '../../coordinator/image-service.ts'
import type { VersionInfo } from '../../protocol/api.ts'

/** Commits image@version of `bytes` zero bytes (default 1 MiB), its file written under `dir`. */
export async function publishZeroVersion (images: Pick<ImageService, 'commitVersion'>, dir: string, image: string, version: string, bytes = 1 << 20): Promise<VersionInfo> {
  const path = join(dir, `${image}-${version}.zero.img`)
  await writeFile(path, new Uint8Array(bytes))
  const built = await buildManifest(path, { name: image, version })
  return await images.commitVersion(image, built.manifestBytes)
}
