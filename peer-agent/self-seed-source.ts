/**
 * Self-seed: the blocks of the older version at the output path, found through
 * that version's stored manifest. The output folder may be written by a local
 * user and the file by anyone who can write it, so nothing read is trusted:
 * every block is offered to the sync, which checks it (block-offers.ts: a chunk
 * read whole in order against its full digest, any other block against its prefix).
 */
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { readPaddedSync } from '../utils/read-full.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { offerBlocks } from './block-offers.ts'
import { SELF_SEED_READ_BYTES } from './constants.ts'
import { blockOffsets } from './sync-ledger.ts'
import { groupVersions, oldBlockOf } from './version-groups.ts'

/** The missing blocks the older version holds: `at[n]` is where in the old file block `index[n]` is, ascending. */
export interface SelfSeedPlan {
  at: Float64Array
  index: Uint32Array
}

/** Where in the file of `old` each missing block of `ctx` is (the first copy of its prefix), in file order. */
export function selfSeedPlan (old: Manifest, ctx: Pick<SyncContext, 'manifest' | 'missing'>): SelfSeedPlan {
  const oldOffsets = blockOffsets(old)
  const groups = groupVersions(old.blockPrefixes, ctx.manifest.blockPrefixes)
  const wants: Array<[number, number]> = []
  for (const index of ctx.missing()) {
    const from = oldBlockOf(groups, index)
    if (from >= 0) wants.push([oldOffsets[from], index])
  }
  wants.sort((a, b) => a[0] - b[0]) // read the old file front to back
  return { at: Float64Array.from(wants, w => w[0]), index: Uint32Array.from(wants, w => w[1]) }
}

/**
 * Self-seed from the older version open as `fd` (not through a symlink). Blocks next to each other
 * in the old file are read in one call, up to SELF_SEED_READ_BYTES at a time, and offered together,
 * so a chunk the update left as it was is read with one call and hashed once.
 */
export function createSelfSeedSource (init: { fd: number, manifest: Manifest }): BlockSource {
  return {
    name: `older version ${init.manifest.version}`,
    kind: 'local',
    async fill (ctx: SyncContext) {
      const { at, index } = selfSeedPlan(init.manifest, ctx)
      const capacity = SELF_SEED_READ_BYTES / BLOCK_SIZE
      const buffer = new Uint8Array(capacity * BLOCK_SIZE)
      const indices = new Uint32Array(capacity)
      for (let next = 0; next < at.length;) {
        let n = 0
        while (next < at.length && n < capacity) {
          // one read for the run of consecutive old blocks starting here (as far as the buffer goes)
          const start = n
          const from = at[next]
          do indices[n++] = index[next++]
          while (next < at.length && n < capacity && at[next] === from + (n - start) * BLOCK_SIZE)
          const view = buffer.subarray(start * BLOCK_SIZE, n * BLOCK_SIZE)
          readPaddedSync(init.fd, view, from) // past the end (a truncated file): zeros, which fail their check
        }
        await offerBlocks(ctx, indices.subarray(0, n), buffer.subarray(0, n * BLOCK_SIZE), 'local')
      }
    }
  }
}
