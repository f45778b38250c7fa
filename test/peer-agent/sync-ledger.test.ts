/** The sync ledger, without disk or network: grouping by prefix, placement, verification state. */
import { describe, expect, it } from 'vitest'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { hashBytes } from '../../chunker/blake3.ts'
import { blockOffsets, createSyncLedger, matchesPrefix } from '../../peer-agent/sync-ledger.ts'
import { block, manifestOf } from './sync-fixtures.ts'

const A = block(1)
const B = block(2)
const C = block(3)

describe('sync ledger', () => {
  it('asks for each distinct block once and places it at every position it occurs', () => {
    // chunk 0: A B A, chunk 1: C A
    const ledger = createSyncLedger(manifestOf([[A, B, A], [C, A]]))
    expect(ledger.missing()).toEqual([0, 1, 3])
    expect(ledger.missingCount()).toBe(3)
    const a = ledger.placeBlock(0, 'host index', 'local')
    expect(a).toEqual({ blocks: [0, 2, 4], completed: [] })
    expect(ledger.isMissing(2)).toBe(false)
    expect(ledger.placeBlock(1, 'origin blocks', 'origin')).toEqual({ blocks: [1], completed: [0] })
    expect(ledger.placeBlock(3, 'origin blocks', 'origin')).toEqual({ blocks: [3], completed: [1] })
    expect(ledger.missingCount()).toBe(0)
    expect(ledger.tally.blocksBySource).toEqual({ 'host index': 3, 'origin blocks': 2 })
    expect(ledger.tally.bytes.local).toBe(3 * BLOCK_SIZE)
    expect(ledger.doneBytes()).toBe(5 * BLOCK_SIZE)
    // placing a block whose prefix is no longer missing changes nothing
    expect(ledger.placeBlock(0, 'again', 'local')).toEqual({ blocks: [], completed: [] })
    expect(ledger.tally.blocksBySource.again).toBeUndefined()
  })

  it('starts from a trusted checkpoint: verified chunks are in place, their blocks elsewhere still missing', () => {
    const verified = new Uint8Array([0b01]) // chunk 0 verified
    const ledger = createSyncLedger(manifestOf([[A, B, A], [C, A]]), verified)
    expect(ledger.isVerified(0)).toBe(true)
    expect(ledger.unverifiedChunks()).toEqual([1])
    expect(ledger.missing()).toEqual([3, 4])
    expect(ledger.doneBytes()).toBe(3 * BLOCK_SIZE)
    expect(ledger.verifiedCount()).toBe(1)
    // the checkpoint's bitmap is copied, not shared
    verified[0] = 0
    expect(ledger.isVerified(0)).toBe(true)
  })

  it('a whole chunk marks it verified and names its blocks still missing elsewhere', () => {
    const ledger = createSyncLedger(manifestOf([[A, B], [C, A]]))
    const elsewhere = ledger.placeChunk(0, 'peers')
    expect(ledger.isVerified(0)).toBe(true)
    expect(ledger.verifiedBitmap[0] & 1).toBe(1)
    expect(ledger.tally.bytes.peers).toBe(2 * BLOCK_SIZE)
    // A is still wanted at position 3; B's group is stale (its one position is this chunk's)
    expect(elsewhere).toEqual([0, 1])
    expect(ledger.placeBlock(0, 'whole chunks', 'peers')).toEqual({ blocks: [3], completed: [] }) // chunk 1 still misses C
    expect(ledger.placeBlock(1, 'whole chunks', 'peers')).toEqual({ blocks: [], completed: [] })
    expect(ledger.missing()).toEqual([2])
    expect(ledger.tally.blocksBySource).toEqual({ 'whole chunks': 1 })
  })

  it('a chunk complete but not verified (failed its digest) stays unverified until marked', () => {
    const ledger = createSyncLedger(manifestOf([[A], [B]]))
    expect(ledger.placeBlock(0, 'x', 'origin').completed).toEqual([0])
    expect(ledger.unverifiedChunks()).toEqual([0, 1])
    ledger.markVerified(0)
    expect(ledger.unverifiedChunks()).toEqual([1])
  })

  it('block offsets skip the zero gaps; prefixes match only their own block', () => {
    const m = manifestOf([[A, B], [C]], 2)
    expect(Array.from(blockOffsets(m))).toEqual([2 * BLOCK_SIZE, 3 * BLOCK_SIZE, 6 * BLOCK_SIZE])
    expect(createSyncLedger(m).offsetOf(2)).toBe(6 * BLOCK_SIZE)
    expect(matchesPrefix(m, 1, hashBytes(B))).toBe(true)
    expect(matchesPrefix(m, 1, hashBytes(C))).toBe(false)
  })
})
