/** The delta pack's cost model and block list, pure. */
import { describe, expect, it } from 'vitest'
import { BATCH_COMPRESSION_PENALTY } from '../../peer-agent/constants.ts'
import { deltaPackBlocks, deltaPackCost } from '../../peer-agent/delta-pack-source.ts'
import { groupVersions, isFirstNew, oldBlockOf } from '../../peer-agent/version-groups.ts'

/** 8-byte prefixes whose first byte is each value. */
function prefixes (...firsts: number[]): Uint8Array {
  const out = new Uint8Array(firsts.length * 8)
  firsts.forEach((v, i) => { out[i * 8] = v })
  return out
}

describe('delta pack cost model', () => {
  it('uses the pack when most of its blocks are still missing', () => {
    // 100 blocks of 10 bytes each in the pack; batches cost 1.5x per block
    const cost = deltaPackCost({ packBytes: 1000, packBlocks: 100, neededFromPack: 100, missing: 100, downloadedBytes: 0, batchPenalty: 1.5 })
    expect(cost).toEqual({ batchOnlyBytes: 1500, withPackBytes: 1000, pays: true })
  })

  it('skips the pack when local sources and peers already brought most of it', () => {
    const cost = deltaPackCost({ packBytes: 1000, packBlocks: 100, neededFromPack: 10, missing: 20, downloadedBytes: 0, batchPenalty: 1.5 })
    expect(cost).toEqual({ batchOnlyBytes: 300, withPackBytes: 1150, pays: false })
  })

  it('counts a part downloaded by an earlier run as paid', () => {
    const input = { packBytes: 1000, packBlocks: 100, neededFromPack: 40, missing: 60, batchPenalty: 1.5 }
    expect(deltaPackCost({ ...input, downloadedBytes: 0 }).pays).toBe(false) // 1300 vs 900
    expect(deltaPackCost({ ...input, downloadedBytes: 500 })).toEqual({ batchOnlyBytes: 900, withPackBytes: 800, pays: true })
  })

  it('a tie is not worth the pack; the default penalty is the measured one', () => {
    expect(deltaPackCost({ packBytes: 150, packBlocks: 10, neededFromPack: 0, missing: 10, downloadedBytes: 0, batchPenalty: 1 }).pays).toBe(false)
    const d = deltaPackCost({ packBytes: 1000, packBlocks: 100, neededFromPack: 100, missing: 100, downloadedBytes: 0 })
    expect(d.batchOnlyBytes).toBeCloseTo(1000 * BATCH_COMPRESSION_PENALTY)
  })

  it('a pack holds the first occurrence of each block not in the older version', () => {
    expect(deltaPackBlocks(prefixes(1, 2, 3, 2, 4, 1), prefixes(1, 9))).toEqual([1, 2, 4])
    expect(deltaPackBlocks(prefixes(1), prefixes(1))).toEqual([])
  })

  it('groups two versions by prefix: the old block holding each new one, and the new ones first seen', () => {
    const g = groupVersions(prefixes(7, 1, 9, 1), prefixes(1, 2, 3, 2, 9, 7, 4))
    expect([0, 1, 2, 3, 4, 5, 6].map(b => oldBlockOf(g, b))).toEqual([1, -1, -1, -1, 2, 0, -1])
    expect([0, 1, 2, 3, 4, 5, 6].filter(b => isFirstNew(g, b))).toEqual([1, 2, 6])
  })
})
