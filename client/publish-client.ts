/**
 * The admin's publish client: chunk an image locally, ask the coordinator
 * which chunks it lacks, upload only those (re-read from the image by
 * offset, a few in parallel), then commit the unsigned manifest. Publishing
 * the same image twice uploads nothing; a new version uploads only what no
 * earlier version had. Used by `trimswarm publish` (bin/commands/publish.ts).
 */
import { open, type FileHandle } from 'node:fs/promises'
import { chunkCid } from '../protocol/block-id.ts'
import { ConflictError, NotFoundError, ValidationError } from '../protocol/errors.ts'
import { isValidName, nonZeroBytes } from '../protocol/manifest.ts'
import { api } from '../protocol/index.ts'
import { buildManifest } from '../chunker/build-manifest.ts'
import { DEFAULT_PUBLISH_CONCURRENCY, PUBLISH_MISSING_BATCH } from './constants.ts'
import { createCoordinatorHttp, type CoordinatorHttp } from './coordinator-http.ts'
import type { AbortOptions } from '../utils/interface.ts'
import { readFull } from '../utils/read-full.ts'
import { forEachLimit } from '../utils/worker-pool.ts'

/** Where and as whom to publish. */
export interface PublishClientInit {
  /** Coordinator base URL, e.g. http://127.0.0.1:8440 */
  coordinator: string
  /** The admin token. */
  token: string
  /** Chunk uploads in flight (default DEFAULT_PUBLISH_CONCURRENCY). */
  concurrency?: number
}

/** Progress of a publish, for a CLI to show. */
export type PublishProgress =
  | { phase: 'scanned', chunks: number, bytes: number }
  | { phase: 'missing', missing: number }
  | { phase: 'uploaded', chunks: number, bytes: number }
  | { phase: 'committed' }

/** Options of one publish. */
export interface PublishOptions extends AbortOptions {
  image: string
  version: string
  onProgress?: (p: PublishProgress) => void
}

/** What a publish did. */
export interface PublishSummary {
  image: string
  version: string
  manifestCid: string
  /** Chunks in the manifest. */
  chunks: number
  chunksUploaded: number
  bytesUploaded: number
  /** Non-zero bytes of the image. */
  nonZeroBytes: number
  seconds: number
  info: api.VersionInfo
}

/** Publishes images to one coordinator. */
export interface PublishClient {
  publish: (imagePath: string, options: PublishOptions) => Promise<PublishSummary>
}

/** Creates a publish client. */
export function createPublishClient (init: PublishClientInit): PublishClient {
  const http: CoordinatorHttp = createCoordinatorHttp({}, { urls: [init.coordinator] })
  const concurrency = init.concurrency ?? DEFAULT_PUBLISH_CONCURRENCY

  const token = init.token

  /**
   * What would refuse the commit, asked before the image is scanned (minutes for a big one):
   * the names, admin rights (an empty missing-chunks query needs the admin token and costs
   * nothing), and whether the version exists already (versions are immutable).
   */
  async function preflight (image: string, version: string, signal?: AbortSignal): Promise<void> {
    if (!isValidName(image)) throw new ValidationError(`bad image name ${JSON.stringify(image)} (letters, digits, . _ + -; at most 128)`)
    if (!isValidName(version)) throw new ValidationError(`bad version ${JSON.stringify(version)} (letters, digits, . _ + -; at most 128)`)
    if (version === 'latest') throw new ValidationError('"latest" is reserved and cannot be a version name')
    await http.json('POST', api.routes.chunksMissing, undefined, { body: { cids: [] }, token, signal, idempotent: true })
    try {
      await http.json('GET', api.routes.versionInfo(image, version), undefined, { token, signal })
    } catch (err) {
      if (err instanceof NotFoundError) return
      throw err
    }
    throw new ConflictError(`${image} version ${version} exists already; versions are immutable: publish under a new version name`)
  }

  return {
    async publish (imagePath, options) {
      const { image, version, signal } = options
      const started = performance.now()
      await preflight(image, version, signal)
      const { manifest, manifestBytes } = await buildManifest(imagePath, { name: image, version, signal })
      options.onProgress?.({ phase: 'scanned', chunks: manifest.chunks.length, bytes: nonZeroBytes(manifest) })

      // One entry per distinct chunk: an image may repeat a chunk.
      const byCid = new Map<string, { offset: number, length: number }>()
      for (const c of manifest.chunks) {
        const cid = chunkCid(c.digest).toString()
        if (!byCid.has(cid)) byCid.set(cid, { offset: c.offset, length: c.length })
      }
      const all = [...byCid.keys()]
      const missing: string[] = []
      for (let i = 0; i < all.length; i += PUBLISH_MISSING_BATCH) {
        const body = { cids: all.slice(i, i + PUBLISH_MISSING_BATCH) }
        const res = await http.json('POST', api.routes.chunksMissing, api.MissingChunksResponse, { body, token, signal, idempotent: true })
        missing.push(...res.missing)
      }
      options.onProgress?.({ phase: 'missing', missing: missing.length })

      let uploaded = 0
      let bytesUploaded = 0
      let fh: FileHandle | undefined
      try {
        fh = await open(imagePath, 'r')
        const image = fh
        await forEachLimit(missing, concurrency, async (cid) => {
          const where = byCid.get(cid)
          if (where == null) throw new ValidationError(`the coordinator asked for chunk ${cid}, which this image does not have`)
          const bytes = new Uint8Array(where.length)
          if (await readFull(image, bytes, where.offset) !== where.length) {
            throw new ValidationError(`image ${imagePath} changed while publishing (short read at ${where.offset})`)
          }
          await http.bytes('PUT', api.routes.chunkUpload(cid), { body: bytes, contentType: 'application/octet-stream', token, signal })
          uploaded++
          bytesUploaded += bytes.length
          options.onProgress?.({ phase: 'uploaded', chunks: uploaded, bytes: bytesUploaded })
        }, { signal })
      } finally {
        await fh?.close()
      }

      const info = await http.json('POST', api.routes.versions(image), api.VersionInfo, { body: manifestBytes, contentType: 'application/cbor', token, signal })
      options.onProgress?.({ phase: 'committed' })
      return {
        image,
        version,
        manifestCid: info.manifestCid,
        chunks: manifest.chunks.length,
        chunksUploaded: uploaded,
        bytesUploaded,
        nonZeroBytes: nonZeroBytes(manifest),
        seconds: (performance.now() - started) / 1000,
        info
      }
    }
  }
}
