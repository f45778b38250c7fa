/**
 * Host index reads beside the LAN session (Trim Transfer with peers; docs/ARCHITECTURE.md "Sync"): the
 * blocks the host index has candidates for are read while the session already runs, so the origin and
 * the peers start on the rest at once instead of after every read (at 100 mbit the WAN sat idle until
 * the reads were over, 3 s after the manifest with 4 agents). What the session sees is this view of the
 * sync: a block a host read will offer is not missing (no round fetches it from the origin), a chunk
 * whose missing blocks all wait for host reads is not wanted (no peer sends it whole), and a chunk of
 * both kinds is judged only once the reads are over (`localPending`, `localDone`). Once they are, the
 * view is the sync itself: what a read could not give (a file changed since indexing) is fetched then.
 */
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { SyncContext } from './block-source.ts'
import { isDiskFull } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { HOST_INDEX_SOURCE, readPlannedBlocks, type HostReadPlan } from './local-sources.ts'

/**
 * `ctx` as the sources beside host reads of `planned` blocks see it, until `done` settles; `groupOf`: the
 * prefix group of every block (the ledger's), so a block's copies wait for its read too.
 */
export function withLocalPending<C extends SyncContext> (ctx: C, groupOf: Uint32Array, planned: readonly number[], done: Promise<void>): C {
  const pending = new Uint8Array(groupOf.length)
  for (const b of planned) pending[groupOf[b]] = 1
  let over = false
  void done.then(() => { over = true })
  const waits = (b: number): boolean => !over && pending[groupOf[b]] === 1
  const isMissing = (b: number): boolean => ctx.isMissing(b) && !waits(b)
  const blocksOf = (c: number): { first: number, end: number } => {
    const { firstBlock, length } = ctx.manifest.chunks[c]
    return { first: firstBlock, end: firstBlock + Math.ceil(length / BLOCK_SIZE) }
  }
  /** Some missing block of chunk `c` waits for a host read, and none can come from elsewhere. */
  const onlyLocal = (c: number): boolean => {
    const { first, end } = blocksOf(c)
    let waiting = false
    for (let b = first; b < end; b++) {
      if (!ctx.isMissing(b)) continue
      if (!waits(b)) return false
      waiting = true
    }
    return waiting
  }
  return {
    ...ctx,
    missing: () => ctx.missing().filter(isMissing),
    missingCount: () => ctx.missing().filter(isMissing).length,
    isMissing,
    unverifiedChunks: () => ctx.unverifiedChunks().filter(c => !onlyLocal(c)),
    localPending: (c: number) => {
      const { first, end } = blocksOf(c)
      for (let b = first; b < end; b++) if (ctx.isMissing(b) && waits(b)) return true
      return false
    },
    localDone: done
  }
}

/** Reads the planned blocks; a failure other than an abort or a full disk leaves them to the sources after. */
async function readHost (ctx: SyncContext, plan: HostReadPlan, options: AbortOptions & { logger: AgentLogger }): Promise<void> {
  try {
    await readPlannedBlocks(ctx, plan, options)
  } catch (err) {
    if (options.signal?.aborted === true || isDiskFull(err)) throw err
    options.logger.warn(`${HOST_INDEX_SOURCE}: ${(err as Error).message} (continuing with the next source)`)
  }
}

/**
 * Reads the host index's planned blocks; `beside` (the peers) runs at the same time on the view above, and
 * both are over when this returns (the first failure is thrown).
 */
export async function readHostBeside<C extends SyncContext> (
  ctx: C, plan: HostReadPlan, options: AbortOptions & { logger: AgentLogger, groupOf: Uint32Array }, beside?: (view: C) => Promise<void>
): Promise<void> {
  if (beside == null) return await readHost(ctx, plan, options)
  options.logger.info(`${HOST_INDEX_SOURCE}: ${plan.blocks.length} blocks found in host files, read beside the LAN session`)
  const reads = readHost(ctx, plan, options)
  const view = withLocalPending(ctx, options.groupOf, plan.blocks, reads.then(() => {}, () => {}))
  const [read, fetched] = await Promise.allSettled([reads, beside(view)])
  if (read.status === 'rejected') throw read.reason
  if (fetched.status === 'rejected') throw fetched.reason
}
