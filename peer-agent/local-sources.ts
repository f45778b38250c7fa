/**
 * Sources of blocks on this machine: the partial file of an interrupted run
 * (resume) and the host index (Trim Transfer); the older version at the output
 * path is self-seed-source.ts. Every block read is offered to the sync, which
 * re-hashes it against the manifest's prefix.
 */
import { closeSync } from 'node:fs'
import { openRegularFile, readPaddedSync } from '../utils/read-full.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { hashBlocks } from '../chunker/blake3.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { matchesPrefix } from './sync-ledger.ts'
import { offerWholeChunkAt } from './block-offers.ts'
import { OPEN_FILES_MAX } from './constants.ts'
import type { BlockLocation, HostIndex } from './host-index.ts'
import { describeRefresh } from './index-stats.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'

/** Reads blocks from files by path, keeping a bounded set of descriptors open. */
export class FileReader {
  private readonly fds = new Map<string, number>()
  private readonly max: number
  constructor (max = OPEN_FILES_MAX) { this.max = max }

  /** Reads BLOCK_SIZE bytes at `offset` into `buf` (zero-padded past EOF); false when the file cannot be read. */
  readBlock (path: string, offset: number, buf: Uint8Array): boolean {
    return this.readAt(path, offset, buf.subarray(0, BLOCK_SIZE)) > 0
  }

  /** Fills `buf` from `offset` (zero-padded past EOF); the bytes read, or -1 when the file cannot be read. */
  readAt (path: string, offset: number, buf: Uint8Array): number {
    let fd = this.fds.get(path)
    try {
      if (fd == null) {
        if (this.fds.size >= this.max) {
          const [oldest, ofd] = this.fds.entries().next().value as [string, number]
          closeSync(ofd)
          this.fds.delete(oldest)
        }
        fd = openRegularFile(path)
        this.fds.set(path, fd)
      }
      return readPaddedSync(fd, buf, offset)
    } catch {
      return -1
    }
  }

  close (): void {
    for (const fd of this.fds.values()) { try { closeSync(fd) } catch {} }
    this.fds.clear()
  }
}

// the swarm's code finds the prefix key here (its one definition is the ledger's)
export { prefixKey } from './sync-ledger.ts'

/**
 * Resume: the blocks an interrupted run already wrote into the temp file, at
 * their own positions. Reads each unverified chunk whole and re-hashes it.
 * Reads the descriptor the sync holds (opened without following a symlink and
 * checked to be our file), never the path again.
 */
export function createResumeSource (init: { fd: number }): BlockSource {
  return {
    name: 'partial file',
    kind: 'local',
    async fill (ctx: SyncContext) {
      const manifest = ctx.manifest
      let buffer = new Uint8Array(0)
      let digests = new Uint8Array(0)
      for (const chunkIndex of ctx.unverifiedChunks()) {
        const chunk = manifest.chunks[chunkIndex]
        if (buffer.length < chunk.length) {
          buffer = new Uint8Array(chunk.length)
          digests = new Uint8Array(chunk.length / BLOCK_SIZE * DIGEST_BYTES)
        }
        const view = buffer.subarray(0, chunk.length)
        readPaddedSync(init.fd, view, chunk.offset)
        hashBlocks(view, digests)
        const blocks = chunk.length / BLOCK_SIZE
        for (let k = 0; k < blocks; k++) {
          const block = chunk.firstBlock + k
          // only offer matches: a block not written yet is not a bad block
          if (ctx.isMissing(block) && matchesPrefix(manifest, block, digests.subarray(k * DIGEST_BYTES))) {
            ctx.offerBlock(block, view.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE), 'local')
          }
        }
        await ctx.tick()
      }
    }
  }
}

/** Blocks read from a host file in one call at most (1 MiB): consecutive blocks of the image are often consecutive in a host file. */
const HOST_RUN_BLOCKS = 256

/** The host index's candidates for the blocks a sync misses, looked up before any is read (`planHostReads`). */
export interface HostReadPlan {
  /** Missing blocks (one per distinct prefix) with at least one candidate, in lookup order. */
  blocks: number[]
  /** Their candidates, the first one first read. */
  found: BlockLocation[][]
}

/** The source name of host index blocks (the summary's blocksBySource). */
export const HOST_INDEX_SOURCE = 'host index'

/** Lookups in one call to the index. */
const LOOKUP_BATCH = 8192

/**
 * Looks up every missing block in the host index (no file read yet). A failing index (not an abort) is
 * logged with `logger` and plans nothing: the sources after it fetch those blocks.
 */
export async function planHostReads (index: HostIndex, ctx: SyncContext, options: AbortOptions & { logger?: AgentLogger }): Promise<HostReadPlan> {
  const missing = ctx.missing()
  const plan: HostReadPlan = { blocks: [], found: [] }
  try {
    for (let i = 0; i < missing.length; i += LOOKUP_BATCH) {
      options.signal?.throwIfAborted()
      const slice = missing.slice(i, i + LOOKUP_BATCH)
      const prefixes = slice.map(b => ctx.manifest.blockPrefixes.subarray(b * BLOCK_PREFIX_BYTES, (b + 1) * BLOCK_PREFIX_BYTES))
      const found = await index.lookupMany(prefixes)
      slice.forEach((b, k) => { if (found[k].length > 0) { plan.blocks.push(b); plan.found.push(found[k]) } })
    }
  } catch (err) {
    if (options.signal?.aborted === true || options.logger == null) throw err
    options.logger.warn(`${HOST_INDEX_SOURCE}: ${(err as Error).message} (continuing with the next source)`)
    return { blocks: [], found: [] }
  }
  return plan
}

/**
 * Reads the planned blocks, in runs of consecutive blocks of one file, and offers each (re-hashed by the
 * sync against its prefix). A block that fails (a file changed since indexing) tries its other candidates.
 */
export async function readPlannedBlocks (ctx: SyncContext, plan: HostReadPlan, options: AbortOptions): Promise<void> {
  const reader = new FileReader()
  const run = new Uint8Array(HOST_RUN_BLOCKS * BLOCK_SIZE)
  const single = new Uint8Array(BLOCK_SIZE) // not the run's buffer: the rest of the run is still to offer
  const offer = (index: number, bytes: Uint8Array): boolean => ctx.offerBlock(index, bytes, 'local', HOST_INDEX_SOURCE)
  const { blocks, found } = plan
  /** Offers entry `e`, the `k`th of the run just read (`read` bytes), trying its other candidates when that fails. */
  const offerOne = (e: number, k: number, read: number): void => {
    const index = blocks[e]
    if (!ctx.isMissing(index)) return
    if (read > k * BLOCK_SIZE && offer(index, run.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE))) return
    for (const loc of found[e].slice(1)) {
      if (!ctx.isMissing(index)) return
      if (reader.readBlock(loc.path, loc.offset, single) && offer(index, single)) return
    }
  }
  let sinceTick = 0
  try {
    for (let j = 0; j < blocks.length;) {
      options.signal?.throwIfAborted()
      const n = runLength(found, j)
      // one read for the run of first candidates
      const first = found[j][0]
      const read = reader.readAt(first.path, first.offset, run.subarray(0, n * BLOCK_SIZE))
      // the blocks the read reached (the last one may be cut short by the file's end: zero-padded)
      const readBlocks = Math.ceil(read / BLOCK_SIZE)
      for (let k = 0; k < n;) {
        const taken = offerWholeChunkAt(ctx, blocks, j + k, j + n, run.subarray(k * BLOCK_SIZE, readBlocks * BLOCK_SIZE), 'local', HOST_INDEX_SOURCE)
        if (taken > 0) {
          k += taken
          continue
        }
        offerOne(j + k, k, read)
        k++
      }
      j += n
      if ((sinceTick += n) >= 1024) { sinceTick = 0; await ctx.tick() }
    }
    await ctx.tick()
  } finally {
    reader.close()
  }
}

/** How many entries from `j` on have first candidates that follow each other in one file (at least 1). */
function runLength (found: BlockLocation[][], j: number): number {
  const first = found[j][0]
  let n = 1
  while (n < HOST_RUN_BLOCKS && j + n < found.length) {
    const c = found[j + n][0]
    if (c == null || c.path !== first.path || c.offset !== first.offset + n * BLOCK_SIZE) break
    n++
  }
  return n
}

/** Refreshes the host index and logs what it found. */
export async function refreshHostIndex (index: HostIndex, logger: AgentLogger, options: AbortOptions): Promise<void> {
  logger.info(describeRefresh(await index.refresh(options)))
}

/**
 * The refresh of a ready index once the image is in place: the lookups used it as of its last
 * refresh (a file changed since fails its re-hash and is not used; one added since is missed
 * this time), so neither the image nor its transfer waited for the folders' walk (1.2-3.4 s,
 * 1.3 CPU-s for 126k files, docs/BENCHMARKS.md "Trim at 100 mbit"); the next sync finds what
 * changed. A failed refresh is not the sync's failure: the next one redoes it.
 */
export async function refreshHostIndexAfter (index: HostIndex, logger: AgentLogger, options: AbortOptions): Promise<void> {
  try {
    await refreshHostIndex(index, logger, options)
  } catch (err) {
    if (options.signal?.aborted !== true) logger.warn(`host index: refresh failed: ${(err as Error).message} (the next sync refreshes it)`)
  } finally {
    await index.close()
  }
}
