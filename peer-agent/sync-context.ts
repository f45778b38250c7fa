/**
 * What the sources of one sync talk to (block-source.ts SyncContext): offered
 * bytes are checked here (block prefix, chunk digest), written to the partial
 * file at the positions the ledger names, and checkpointed now and then. The
 * ledger (sync-ledger.ts) keeps the state, partial-file.ts does the I/O.
 */
import { equals } from 'multiformats/bytes'
import { setImmediate as yieldLoop } from 'node:timers/promises'
import { chunkCid } from '../protocol/block-id.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import { digestOf } from '../chunker/blake3.ts'
import type { BlockSource, SourceKind, SyncContext } from './block-source.ts'
import type { AgentLogger } from './interface.ts'
import type { PartialImage } from './partial-file.ts'
import { matchesPrefix, type SyncLedger } from './sync-ledger.ts'
import { writeRecord, type Checkpoint } from './sync-records.ts'

/** What the sync context reports to (image-sync.ts wires these to its components). */
export interface SyncContextComponents {
  ledger: SyncLedger
  partial: PartialImage
  logger: AgentLogger
  /** Bytes received from the origin since the sync started. */
  originBytes: () => number
  onProgress?: (progress: { phase: string, doneBytes: number, bytes: SyncLedger['tally']['bytes'] }) => void
  onChunkVerified?: (chunk: number) => void
  onCheckpoint?: (verifiedChunks: number) => void
}

/** Where and how often the sync context checkpoints. */
export interface SyncContextInit {
  checkpointPath: string
  manifestCid: string
  checkpointIntervalMs: number
  signal?: AbortSignal
  /** SyncContext.segmentSpool (made when first used). */
  segmentSpool?: string
}

/** A sync context with the driver's controls. */
export interface DrivenSyncContext extends SyncContext {
  /** The source now filling (its name is what its blocks count under); undefined: the driver itself. */
  setSource: (source: BlockSource | undefined) => void
  /** Names the phase for progress and reports progress. */
  setPhase: (phase: string) => void
  progress: () => void
  /** fsyncs the partial file and records the verified chunks, when anything changed. */
  checkpoint: () => Promise<void>
  /** Waits for a checkpoint `tick` started in the background (its failure is thrown by the next tick, not here). */
  settled: () => Promise<void>
  /** Records the verified chunks as of the last fsync (a failed sync keeps them for the next run). */
  writeCheckpoint: () => Promise<void>
}

/** Creates the context the sources of one sync fill. */
export function createSyncContext (components: SyncContextComponents, init: SyncContextInit): DrivenSyncContext {
  const { ledger, partial, logger } = components
  const manifest = ledger.manifest
  let source: BlockSource | undefined
  let phase = 'starting'
  let lastCheckpoint = performance.now()
  let dirty = false
  // a checkpoint in the background (checkpointInBackground), and what made one fail (thrown by the next tick)
  let background: Promise<void> | undefined
  let failed: unknown
  // the chunk offerChunkBlocks verified whole: its completion by place() needs no second hash
  let verifiedWhole = -1

  function markVerified (chunk: number): void {
    ledger.markVerified(chunk)
    dirty = true
    components.onChunkVerified?.(chunk)
  }

  /**
   * Hashes a chunk whose blocks are all in place (from the writes still gathered when it is all there:
   * the bytes hashed are the bytes written; else read back), and writes it out before it counts as
   * verified, so a verified chunk is in the file for a checkpoint or a peer. One that fails is fetched whole later.
   */
  function verifyAssembled (chunk: number): void {
    const { offset, length, digest } = manifest.chunks[chunk]
    if (equals(digestOf(partial.read(offset, length)), digest)) {
      partial.flush()
      markVerified(chunk)
      return
    }
    // blocks matched their prefixes but the chunk does not: a prefix collision or a changed source
    ledger.tally.discardedChunks++
    logger.warn(`chunk ${chunk} (${chunkCid(digest).toString()}) failed verification after assembly; fetching it whole`)
  }

  /** Writes block bytes (already checked) wherever the ledger says their prefix is missing. */
  function place (block: number, bytes: Uint8Array, sourceName: string, kind: SourceKind): void {
    const { blocks, completed } = ledger.placeBlock(block, sourceName, kind)
    for (const position of blocks) partial.write(bytes, ledger.offsetOf(position))
    for (const chunk of completed) {
      if (chunk !== verifiedWhole) { verifyAssembled(chunk); continue }
      partial.flush() // written out before it counts as verified, as verifyAssembled does
      markVerified(chunk)
    }
  }

  /** Records `verified` (a bitmap, base64) as the chunks `file`, as fsynced, holds. */
  async function recordCheckpoint (verified: string, file: Checkpoint['file']): Promise<void> {
    const record: Checkpoint = { image: manifest.name, version: manifest.version, manifestCid: init.manifestCid, temp: partial.path, verified, file }
    await writeRecord(init.checkpointPath, JSON.stringify(record))
  }

  async function writeCheckpoint (): Promise<void> {
    await recordCheckpoint(Buffer.from(ledger.verifiedBitmap).toString('base64'), partial.identity())
  }

  async function checkpoint (): Promise<void> {
    await background
    lastCheckpoint = performance.now()
    if (!dirty) return
    dirty = false
    partial.sync() // data first, then the bitmap that vouches for it
    await writeCheckpoint()
    components.onCheckpoint?.(ledger.verifiedCount())
  }

  /**
   * A checkpoint whose fsync runs in the thread pool while the sources go on (a blocking one held the
   * event loop, and so the LAN peers, for the whole flush: tens of ms every CHECKPOINT_INTERVAL_MS).
   * The bitmap is taken with the flush the fsync vouches for; one at a time.
   */
  function checkpointInBackground (): void {
    lastCheckpoint = performance.now()
    dirty = false
    const verified = Buffer.from(ledger.verifiedBitmap).toString('base64')
    const count = ledger.verifiedCount()
    background = (async () => {
      await recordCheckpoint(verified, await partial.syncInBackground()) // data first, then the bitmap that vouches for it
      components.onCheckpoint?.(count)
    })().catch((err: unknown) => { failed ??= err }).finally(() => { background = undefined })
  }

  function progress (): void {
    ledger.tally.bytes.origin = components.originBytes()
    components.onProgress?.({ phase, doneBytes: ledger.doneBytes(), bytes: { ...ledger.tally.bytes } })
  }

  return {
    manifest,
    missing: ledger.missing,
    missingCount: ledger.missingCount,
    isMissing: ledger.isMissing,
    isHeld: (block) => !ledger.isMissing(block),
    unverifiedChunks: ledger.unverifiedChunks,
    isVerified: ledger.isVerified,
    chunkStartingAt: ledger.chunkStartingAt,
    segmentSpool: init.segmentSpool,
    offerBlock (block, bytes, kind, sourceName) {
      if (!ledger.isMissing(block)) return true
      if (!matchesPrefix(manifest, block, digestOf(bytes))) {
        ledger.tally.discardedBlocks++
        return false
      }
      place(block, bytes, sourceName ?? source?.name ?? kind, kind)
      return true
    },
    offerChunk (chunk, bytes, kind, verified = false) {
      const { offset, length, digest, firstBlock } = manifest.chunks[chunk]
      if (ledger.isVerified(chunk)) return true
      if (kind === 'origin') ledger.tally.chunksFetched++ // whole chunks from the origin, whichever source asked
      if (bytes.length !== length || (!verified && !equals(digestOf(bytes), digest))) {
        ledger.tally.discardedChunks++
        return false
      }
      partial.write(bytes, offset)
      partial.flush()
      const alsoElsewhere = ledger.placeChunk(chunk, kind)
      dirty = true
      components.onChunkVerified?.(chunk)
      // the same blocks elsewhere in the image come for free
      for (const block of alsoElsewhere) {
        const at = (block - firstBlock) * BLOCK_SIZE
        place(block, bytes.subarray(at, at + BLOCK_SIZE), 'whole chunks', kind)
      }
      return true
    },
    offerChunkBlocks (chunk, bytes, kind, sourceName) {
      const { length, digest, firstBlock } = manifest.chunks[chunk]
      // all missing and all different: placing them one by one as the chunk's bytes completes exactly this chunk
      if (bytes.length !== length || ledger.isVerified(chunk) || !ledger.blocksAllMissingAndDistinct(chunk)) return false
      if (!equals(digestOf(bytes), digest)) return false
      const blocks = length / BLOCK_SIZE
      verifiedWhole = chunk
      try {
        const name = sourceName ?? source?.name ?? kind
        for (let k = 0; k < blocks; k++) place(firstBlock + k, bytes.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE), name, kind)
      } finally {
        verifiedWhole = -1
      }
      return true
    },
    async tick () {
      // what a kill -9 loses is what is still gathered: never more than a tick's worth
      partial.flush()
      init.signal?.throwIfAborted()
      if (failed != null) throw failed
      if (dirty && background == null && performance.now() - lastCheckpoint >= init.checkpointIntervalMs) checkpointInBackground()
      progress()
      await yieldLoop()
    },
    setSource: (next) => { source = next },
    setPhase: (next) => { phase = next; progress() },
    progress,
    checkpoint,
    settled: async () => { await background },
    writeCheckpoint
  }
}
