/**
 * What the LAN session sees of a sync while host index reads run beside it (peer-agent/local-pending.ts):
 * blocks a read will offer are not missing, chunks that wait only for reads are not wanted, chunks of
 * both kinds are judged after the reads; once they are over the view is the sync itself.
 */
import { describe, expect, it } from 'vitest'
import type { SyncContext } from '../../peer-agent/block-source.ts'
import { withLocalPending } from '../../peer-agent/local-pending.ts'
import { groupByPrefix } from '../../protocol/prefix-groups.ts'
import { manifestOfCounts } from './lan-fixtures.ts'

/** A sync of 3 chunks of 4 blocks; block 9 repeats block 1 (same prefix); `missing` blocks not in place yet. */
function syncOf (missing: number[]): { ctx: SyncContext, have: (b: number) => void } {
  const manifest = manifestOfCounts([4, 4, 4], b => (b === 9 ? 2 : b + 1))
  const gone = new Set(missing)
  const chunkOf = (b: number): number => Math.floor(b / 4)
  const ctx = {
    manifest,
    isMissing: (b: number) => gone.has(b),
    missing: () => [...gone].filter(b => b !== 9).sort((a, b) => a - b),
    missingCount: () => [...gone].filter(b => b !== 9).length,
    unverifiedChunks: () => [0, 1, 2].filter(c => [...gone].some(b => chunkOf(b) === c))
  } as unknown as SyncContext
  return { ctx, have: (b) => { gone.delete(b); if (b === 1) gone.delete(9) } }
}

describe('host reads beside the LAN session', () => {
  it('hides what the reads will give, wants no chunk that waits only for them, and is the sync itself once they are over', async () => {
    // chunk 0 misses blocks 0 and 1 (both on the host), chunk 1 misses 5 (on the host) and 6 (nowhere), chunk 2 misses 9 (= block 1)
    const { ctx, have } = syncOf([0, 1, 5, 6, 9])
    let over!: () => void
    const done = new Promise<void>(resolve => { over = resolve })
    const view = withLocalPending(ctx, groupByPrefix(ctx.manifest.blockPrefixes).groupOf, [0, 1, 5], done)
    expect(view.isMissing(6)).toBe(true)
    expect([0, 1, 5, 9].map(view.isMissing)).toEqual([false, false, false, false]) // 9: a copy of block 1, read once
    expect(view.missing()).toEqual([6])
    expect(view.missingCount()).toBe(1)
    // chunk 1 is wanted (block 6 must come from elsewhere); chunks 0 and 2 wait only for reads
    expect(view.unverifiedChunks()).toEqual([1])
    expect([0, 1, 2].map(c => view.localPending?.(c))).toEqual([true, true, true])
    have(5)
    expect(view.localPending?.(1)).toBe(false)
    // a read that fails (a changed file) leaves its block missing: once the reads are over, it is fetched like any other
    have(0)
    over()
    await view.localDone
    expect(view.isMissing(1)).toBe(true)
    expect(view.missing()).toEqual([1, 6])
    expect(view.unverifiedChunks()).toEqual([0, 1, 2])
    expect([0, 1, 2].map(c => view.localPending?.(c))).toEqual([false, false, false])
  })
})
