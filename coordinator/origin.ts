/**
 * The origin's reads of a resolved version: block batches (one zstd stream
 * each, within the shared batch slots) and single chunks. A stored chunk that
 * fails its digest or is gone is refused, counted and logged with the fix.
 */
import type { api } from '../protocol/index.ts'
import { checkBlockBatch } from '../protocol/block-batch.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { BlockRange } from '../protocol/delta-pack.ts'
import { HashMismatchError, NotFoundError } from '../protocol/errors.ts'
import { blockCount } from '../protocol/manifest.ts'
import type { CID } from 'multiformats/cid'
import { createBlockBatchStream, type BlockBatchStreamOptions, type ZstdSettings } from './block-batch.ts'
import { createBatchSlots, defaultShare, type SlotOwner } from './batch-slots.ts'
import { ORIGIN_BATCH_STALL_MS, ORIGIN_MAX_CONCURRENT_BATCHES } from './constants.ts'
import type { AbortOptions, BlockStore, Logger } from './interface.ts'
import type { CachedManifest } from './version-cache.ts'

/** Options of openBlockBatch. */
export interface BlockBatchOptions extends AbortOptions {
  /** Who asks (their share of the batch slots); default: one anonymous owner. */
  owner?: SlotOwner
  /** Called when the stream is aborted for making no write progress: the caller drops the connection. */
  onStall?: () => void
}

/** Settings of the origin (defaults in coordinator/constants.ts). */
export interface OriginInit {
  zstd: ZstdSettings
  maxConcurrentBatches?: number
  maxBatchesPerPrincipal?: number
  maxBatchesPerGroup?: number
  batchStallMs?: number
}

/** Counters for /metrics (part of ImageStats). */
export interface OriginStats {
  /** Uncompressed bytes of the blocks sent in batches (blocks * BLOCK_SIZE), to compare with the bytes on the wire. */
  blockBatchRawBytes: number
  blockBatches: number
  blockBatchesFailed: number
  /** Block batch requests waiting for a compression slot. */
  blockBatchesWaiting: number
  /** Block batch streams aborted because their client took no byte for batchStallMs. */
  blockBatchesStalled: number
  /** Times a stored chunk failed its digest (or was missing) when the origin read it: refused, never served; run `coordinator fsck`. */
  corruptChunkReads: number
  /** Block batch bytes on the wire (compressed). */
  blockBytesServed: number
}

/** The origin's reads of a version already resolved (its info and cached manifest). */
export interface Origin {
  /** Checks the ranges, waits for a batch slot and returns the zstd stream of the blocks. */
  openBlockBatch: (info: api.VersionInfo, cached: CachedManifest, ranges: BlockRange[], options?: BlockBatchOptions) => Promise<ReadableStream<Uint8Array>>
  /** One chunk of the version (NotFoundError when the version does not hold it). */
  getChunk: (info: api.VersionInfo, cached: CachedManifest, cid: CID, options?: AbortOptions) => Promise<Uint8Array>
  stats: () => OriginStats
}

type BatchEvents = Pick<BlockBatchStreamOptions, 'onStall' | 'onUnavailable' | 'onWireBytes' | 'onDone'>

const ANONYMOUS: SlotOwner = { principal: '', groups: [] }

/** Creates the origin. */
export function createOrigin (components: { blockStore: BlockStore, logger: Logger }, init: OriginInit): Origin {
  const { blockStore, logger } = components
  const counts = { blockBatchRawBytes: 0, blockBatches: 0, blockBatchesFailed: 0, blockBatchesStalled: 0, corruptChunkReads: 0, blockBytesServed: 0 }
  // Each batch stream holds a zstd window of up to 2^windowLog bytes (sized
  // down to the batch by the pledged size): bound how many run at once so a
  // crowd of first installs queues instead of exhausting memory, and share
  // them so one token or group cannot hold them all (batch-slots.ts).
  const maxBatches = init.maxConcurrentBatches ?? ORIGIN_MAX_CONCURRENT_BATCHES
  const slots = createBatchSlots({
    maxSlots: maxBatches,
    maxPerPrincipal: init.maxBatchesPerPrincipal ?? defaultShare(maxBatches),
    maxPerGroup: init.maxBatchesPerGroup ?? defaultShare(maxBatches)
  })
  const stallMs = init.batchStallMs ?? ORIGIN_BATCH_STALL_MS

  /** A stored chunk the origin could not read (failed its digest, or gone): counted and logged with what the admin should do. */
  function chunkUnreadable (info: api.VersionInfo, cid: string, err: Error): void {
    counts.corruptChunkReads++
    logger.error('stored chunk refused: not served', {
      image: info.image,
      version: info.version,
      cid,
      error: err.message,
      hint: 'stop the coordinator and run `trimswarm coordinator fsck --data DIR --repair-from IMAGE_FILE` to restore it from the source image' +
        ' (without --repair-from fsck marks the versions holding it incomplete)'
    })
  }

  /** The stream's callbacks: counters, logs, and the slot given back when it ends. */
  function streamEvents (info: api.VersionInfo, owner: SlotOwner, release: () => void, options: BlockBatchOptions): BatchEvents {
    const unreadable = new Set<string>()
    return {
      onStall: () => {
        counts.blockBatchesStalled++
        const { image, version } = info
        logger.warn('block batch aborted: its client took no byte', { image, version, principal: owner.principal, seconds: stallMs / 1000 })
        options.onStall?.()
      },
      onUnavailable: (cid: string, err: Error) => {
        // one report per chunk and stream, however many of its ranges name it
        if (unreadable.has(cid)) return
        unreadable.add(cid)
        chunkUnreadable(info, cid, err)
      },
      onWireBytes: (n: number) => { counts.blockBytesServed += n },
      onDone: (err?: Error) => {
        release()
        if (err == null) return
        counts.blockBatchesFailed++
        logger.warn('block batch ended early', { image: info.image, version: info.version, error: err.message })
      }
    }
  }

  return {
    async openBlockBatch (info, { manifest }, ranges, options = {}) {
      const blocks = checkBlockBatch(ranges, blockCount(manifest))
      const owner = options.owner ?? ANONYMOUS
      const release = await slots.acquire(owner, options.signal)
      counts.blockBatches++
      counts.blockBatchRawBytes += blocks * BLOCK_SIZE
      try {
        const events = streamEvents(info, owner, release, options)
        return createBlockBatchStream(blockStore, manifest, ranges, { zstd: init.zstd, blocks, signal: options.signal, stallMs, ...events })
      } catch (err) {
        release()
        throw err
      }
    },
    async getChunk (info, { cids }, cid, options = {}) {
      if (!cids.has(cid.toString())) throw new NotFoundError(`version ${info.version} of ${info.image} has no chunk ${cid.toString()}`)
      try {
        return await blockStore.get(cid, options)
      } catch (err) {
        if (err instanceof HashMismatchError || err instanceof NotFoundError) chunkUnreadable(info, cid.toString(), err)
        throw err
      }
    },
    stats: () => ({ ...counts, blockBatchesWaiting: slots.waiting() })
  }
}
