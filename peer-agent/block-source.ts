/**
 * The one interface every source of blocks implements: the partial file of an
 * interrupted run, the older version on disk, the host index, (LAN peers, the
 * swarm) and the origin. A source offers bytes; the sync verifies and writes
 * them, so no source is trusted.
 */
import type { Manifest } from '../protocol/manifest.ts'
import type { AbortOptions } from './interface.ts'

/** Which byte counter a source's blocks go to. */
export type SourceKind = 'local' | 'peers' | 'origin'

/** What a source sees of a sync in progress. */
export interface SyncContext {
  readonly manifest: Manifest
  /** One block index per distinct block digest prefix still missing, ascending (each distinct block needs fetching once). */
  missing: () => number[]
  /** Number of distinct blocks still missing. */
  missingCount: () => number
  /** Whether block `index` (among the manifest's non-zero blocks) is still missing. */
  isMissing: (index: number) => boolean
  /**
   * Whether block `index` is in place: the sync's own state, whatever view a source is given (beside
   * host reads a block a read will give is not missing, yet not held either: local-pending.ts).
   */
  isHeld: (index: number) => boolean
  /**
   * Offers the bytes of block `index`: hashed and compared with the manifest's
   * prefix; when it matches, written to every missing position holding the
   * same block. Returns false (and counts a discarded block) on a mismatch.
   * `source`: the name its blocks count under (default: the source running now).
   */
  offerBlock: (index: number, bytes: Uint8Array, kind: SourceKind, source?: string) => boolean
  /**
   * Offers a whole chunk: verified against its full digest, written, marked verified.
   * `verified`: the caller already checked its length and full BLAKE3 digest against
   * this manifest (the swarm session does, before it hands a chunk over), so it is not
   * hashed twice.
   */
  offerChunk: (chunk: number, bytes: Uint8Array, kind: SourceKind, verified?: boolean) => boolean
  /**
   * Offers all the blocks of chunk `chunk` at once, in order (`bytes` is the whole chunk, e.g. one
   * decoded segment piece): verified once against the chunk's full digest, then placed as its blocks
   * (counted as blocks of the current source, their copies elsewhere filled too). False, with nothing
   * written or counted, when the chunk is verified already, any of its blocks is not missing, or the
   * digest differs: the caller then offers the blocks one by one (which keeps the good ones).
   * `source`: the name its blocks count under (default: the source running now).
   */
  offerChunkBlocks: (chunk: number, bytes: Uint8Array, kind: SourceKind, source?: string) => boolean
  /** The chunk whose first block is `block`, or -1 when `block` is inside a chunk. */
  chunkStartingAt: (block: number) => number
  /** Whether chunk `chunk` is verified (in place and checked against its full digest). */
  isVerified: (chunk: number) => boolean
  /** Chunks not verified yet. */
  unverifiedChunks: () => number[]
  /** Lets sources yield to the event loop and checkpoint now and then. */
  tick: () => Promise<void>
  /**
   * While host index reads run beside this source (local-pending.ts): whether chunk `chunk` still
   * waits for one of them. Its verdict (verified or not) waits for `localDone`.
   */
  localPending?: (chunk: number) => boolean
  /** Settles once the host index reads running beside this source are over. */
  localDone?: Promise<void>
  /**
   * A private folder of the data dir where the segment source spools each segment as it downloads
   * it, so a kill -9 mid-segment resumes it (segment-download.ts); none: segments are held in memory only.
   */
  readonly segmentSpool?: string
}

/** A source of blocks for a sync, tried in order. */
export interface BlockSource {
  readonly name: string
  readonly kind: SourceKind
  /**
   * Starts what does not depend on the sources ahead of it, while they run (LAN sharing: joining the
   * swarm and waiting for the site's agents); whatever it starts fails or finishes within fill.
   */
  prepare?: (options: AbortOptions) => void
  /** Offers what it can of the missing blocks; resolves when it has nothing more to give. */
  fill: (ctx: SyncContext, options: AbortOptions) => Promise<void>
  close?: () => Promise<void>
}
