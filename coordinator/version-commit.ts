/**
 * Publishing a version: which chunks are still to upload, then the commit of
 * the unsigned manifest, checked (every chunk present, every block prefix
 * true to the stored bytes, no zero block), signed and stored in one write.
 * The checks of one chunk's blocks and the new version's info are pure.
 */
import type { CID } from 'multiformats/cid'
import { equals } from 'multiformats/bytes'
import { api } from '../protocol/index.ts'
import { chunkCid, toHex } from '../protocol/block-id.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { ConflictError, InvalidManifestError, NotFoundError, ValidationError } from '../protocol/errors.ts'
import { blockCount, decodeManifest, nonZeroBytes, type Manifest } from '../protocol/manifest.ts'
import { hashBlocks, hashBytes, manifestCidOf } from '../chunker/blake3.ts'
import type { ChunkGuard } from './chunk-guard.ts'
import { CHUNK_CHECK_CONCURRENCY } from './constants.ts'
import { countReusedBlocks, digestSet } from './delta-pack-builder.ts'
import type { AbortOptions, BlockStore, Logger, ManifestSigner } from './interface.ts'
import type { VersionCache } from './version-cache.ts'
import { LATEST, latestOf } from './version-records.ts'
import type { VersionStore } from './version-store.ts'
import type { WriteLock } from './write-lock.ts'
import { forEachLimit } from '../utils/worker-pool.ts'

const ZERO_BLOCK_DIGEST = hashBytes(new Uint8Array(BLOCK_SIZE))

/**
 * Hashes the blocks of chunk `index` (its stored `bytes`) into `digests` (the
 * version's, DIGEST_BYTES per block). Throws InvalidManifestError when the
 * bytes do not fit the manifest: a manifest whose prefixes lie would make
 * clients reuse wrong local blocks.
 */
export function checkChunkBlocks (manifest: Manifest, index: number, bytes: Uint8Array, digests: Uint8Array): void {
  const chunk = manifest.chunks[index]
  if (bytes.length !== chunk.length) throw new InvalidManifestError(`chunk ${index} is ${chunk.length} bytes in the manifest, ${bytes.length} stored`)
  const blockDigests = hashBlocks(bytes)
  digests.set(blockDigests, chunk.firstBlock * DIGEST_BYTES)
  for (let b = 0; b < chunk.length / BLOCK_SIZE; b++) {
    const d = blockDigests.subarray(b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES)
    const block = chunk.firstBlock + b
    if (!equals(d.subarray(0, BLOCK_PREFIX_BYTES), manifest.blockPrefixes.subarray(block * BLOCK_PREFIX_BYTES, (block + 1) * BLOCK_PREFIX_BYTES))) {
      throw new InvalidManifestError(`block ${block} (in chunk ${index}) has digest ${toHex(d)}, the manifest's prefix does not match`)
    }
    if (equals(d, ZERO_BLOCK_DIGEST)) throw new InvalidManifestError(`block ${block} is all zero; zero blocks are holes, never part of a chunk`)
  }
}

/** Percent (two decimals) of the new version's blocks whose digest the previous version has; 100 for no blocks. */
export function reusedPercent (digests: Uint8Array, previousDigests: Uint8Array, blocks: number): number {
  return blocks === 0 ? 100 : Math.round(countReusedBlocks(digests, digestSet(previousDigests)) / blocks * 10000) / 100
}

/** The info of a new version. */
export function newVersionInfo (image: string, manifest: Manifest, manifestCid: string, previous: string | null, reused: number | null): api.VersionInfo {
  return {
    image,
    version: manifest.version,
    manifestCid,
    size: manifest.size,
    nonZeroBytes: nonZeroBytes(manifest),
    chunks: manifest.chunks.length,
    blocks: blockCount(manifest),
    publishedAt: new Date().toISOString(),
    retired: false,
    previous,
    deltaPackBytes: null,
    reusedFromPreviousPercent: reused
  }
}

/** What a commit needs. */
export interface VersionCommitComponents {
  store: VersionStore
  cache: VersionCache
  blockStore: BlockStore
  signer: ManifestSigner
  logger: Logger
  guard: ChunkGuard
  writeLock: WriteLock
  /** Called with each committed version (the delta pack of one with a previous version is queued). */
  onCommitted: (info: api.VersionInfo) => void
}

/** Publishing (see the module comment). */
export interface VersionCommit {
  /** The CIDs among `cids` that the block store lacks, in the given order; what is present is claimed against storage gc. */
  missingChunks: (cids: CID[], options?: AbortOptions) => Promise<CID[]>
  /** Checks, signs and stores a version from unsigned manifest bytes; `image` is the name in the path. */
  commit: (image: string, manifestBytes: Uint8Array, options?: AbortOptions) => Promise<api.VersionInfo>
}

/** Creates the publishing side of the image service. */
export function createVersionCommit (components: VersionCommitComponents): VersionCommit {
  const { store, cache, blockStore, signer, logger, guard, writeLock } = components

  /** Versions are immutable: ConflictError when `image` has `version` already. */
  async function assertNew (image: string, version: string): Promise<void> {
    if (await cache.record(image, version) != null) throw new ConflictError(`image ${image} already has version ${version} (versions are immutable)`)
  }

  async function missingChunks (cids: CID[], options: AbortOptions = {}): Promise<CID[]> {
    // asked by a publish before it uploads: what is present now is claimed for it (kept by storage gc)
    await guard.claim(cids.map(c => c.toString()))
    const present = new Array<boolean>(cids.length)
    await forEachLimit(cids, CHUNK_CHECK_CONCURRENCY, async (cid, i) => {
      options.signal?.throwIfAborted()
      try {
        await blockStore.touch(cid, options)
        present[i] = true
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err
        present[i] = false
      }
    })
    return cids.filter((_, i) => !present[i])
  }

  /** Every chunk present and true to the manifest: the version's block digests. */
  async function checkedDigests (manifest: Manifest, cids: CID[], options: AbortOptions): Promise<Uint8Array> {
    const missing = await missingChunks(cids, options)
    if (missing.length > 0) {
      throw new ConflictError(`${missing.length} of ${cids.length} chunks are not uploaded yet (first: ${missing.slice(0, 3).join(', ')})`)
    }
    const digests = new Uint8Array(blockCount(manifest) * DIGEST_BYTES)
    await forEachLimit(manifest.chunks, CHUNK_CHECK_CONCURRENCY, async (_chunk, i) => {
      options.signal?.throwIfAborted()
      checkChunkBlocks(manifest, i, await blockStore.get(cids[i], { ...options, verify: true }), digests)
    })
    return digests
  }

  /** Stores the checked, signed version after the image's latest, under the write lock. */
  async function storeVersion (image: string, manifest: Manifest, manifestCid: string, envelope: Uint8Array, digests: Uint8Array): Promise<api.VersionInfo> {
    return await writeLock(async () => {
      await assertNew(image, manifest.version)
      const previous = latestOf(await cache.records(image))
      const prevDigests = previous == null ? undefined : await store.digests(image, previous.info.version)
      const reused = prevDigests == null ? null : reusedPercent(digests, prevDigests, blockCount(manifest))
      const info = newVersionInfo(image, manifest, manifestCid, previous?.info.version ?? null, reused)
      // One write: an interrupted commit leaves no version, a finished one leaves all of it.
      try {
        await store.commit({ record: { info, seq: await store.nextSeq() }, envelope, digests })
      } finally {
        // `latest` moves for the very next request
        cache.invalidate(image)
      }
      logger.info('version committed', { image, version: manifest.version, previous: info.previous, chunks: info.chunks, reusedFromPreviousPercent: reused })
      components.onCommitted(info)
      return info
    })
  }

  return {
    missingChunks,
    async commit (image, manifestBytes, options = {}) {
      api.name.parse(image, 'image')
      const manifest = decodeManifest(manifestBytes)
      if (manifest.name !== image) throw new ValidationError(`manifest is for image ${manifest.name}, not ${image}`)
      if (manifest.version === LATEST) throw new ValidationError(`"${LATEST}" is reserved and cannot be a version name`)
      await assertNew(image, manifest.version)
      const cids = manifest.chunks.map(c => chunkCid(c.digest))
      // claimed against storage gc from the check of the chunks to the stored version
      const release = guard.committing(cids.map(c => c.toString()))
      try {
        const digests = await checkedDigests(manifest, cids, options)
        const envelope = await signer.sign(manifestBytes)
        return await storeVersion(image, manifest, manifestCidOf(manifestBytes).toString(), envelope, digests)
      } finally {
        release()
      }
    }
  }
}
