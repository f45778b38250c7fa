/**
 * Claim rounds on segment boundaries without a network (peer-agent/lan-round-plan.ts): where
 * chunks lie among segments, which segments a round takes whole, which chunks it gives back
 * (another agent's segment, or beyond the round), and what is left to block batches.
 */
import { describe, expect, it } from 'vitest'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { manifestOfCounts } from './lan-fixtures.ts'
import { LAN_ORIGIN_BATCH_BYTES, LAN_ORIGIN_MIN_ROUNDS } from '../../peer-agent/constants.ts'
import { planOriginRound, roundSegments, segmentLayout, type RoundView, type SegmentLayout } from '../../peer-agent/lan-round-plan.ts'

/**
 * 8 chunks of 3 blocks (24 distinct blocks) in segments of 6 blocks: segment s holds chunks 2s and
 * 2s+1 exactly, so segment s's anchor (the chunk of its last block) is chunk 2s+1.
 */
const aligned = (): SegmentLayout => segmentLayout(manifestOfCounts(Array.from({ length: 8 }, () => 3)), 6)

/** A view where every chunk is open, `mine` is ours, nothing is taken and every block of a segment is needed. */
function viewOf (layout: SegmentLayout, mine: Iterable<number>, over: Partial<RoundView> = {}): RoundView {
  return { mine: new Set(mine), open: () => true, taken: () => false, needed: s => layout.blocks[s].length, ...over }
}

const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

describe('segment layout', () => {
  it('gives each chunk its home (the last segment holding one of its blocks) and each segment its anchor', () => {
    // chunks of 4, 4, 4 blocks in segments of 5: chunk 1 straddles segments 0 and 1, chunk 2 segments 1 and 2
    const l = segmentLayout(manifestOfCounts([4, 4, 4]), 5)
    expect(l.blocks.map(b => [...b])).toEqual([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]])
    expect([...l.home]).toEqual([0, 1, 2])
    expect(l.groups).toEqual([[0], [1], [2]])
    // segment 0 ends in block 4 (chunk 1), segment 1 in block 9 (chunk 2), segment 2 in block 11 (chunk 2)
    expect([...l.anchor]).toEqual([1, 2, 2])
    expect([...l.chunkOf]).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
  })

  it('a block seen before lies in the segment of its first occurrence: a chunk of repeats belongs to that segment', () => {
    // chunk 2 repeats chunk 0's blocks (prefixes 1, 2, 3): it adds no distinct block
    const l = segmentLayout(manifestOfCounts([3, 3, 3], b => (b >= 6 ? b - 5 : b + 1)), 3)
    expect(l.blocks.map(b => [...b])).toEqual([[0, 1, 2], [3, 4, 5]])
    expect([...l.home]).toEqual([0, 1, 0])
    expect(l.groups).toEqual([[0, 2], [1]])
  })

  it('a round is about LAN_ORIGIN_BATCH_BYTES of whole segments, at least one, fewer on a small image', () => {
    const big = manifestOfCounts(Array.from({ length: 4096 }, () => 16)) // 256 MiB
    expect(roundSegments(big, 1008)).toBe(Math.floor(LAN_ORIGIN_BATCH_BYTES / (1008 * BLOCK_SIZE)))
    expect(roundSegments(big, 64 * 1024)).toBe(1)
    const small = manifestOfCounts(Array.from({ length: 64 }, () => 16)) // 4 MiB
    expect(roundSegments(small, 16)).toBe(Math.floor(64 * 16 / LAN_ORIGIN_MIN_ROUNDS / 16))
  })
})

describe('planOriginRound', () => {
  it('an agent alone takes whole segments in image order, as many as a round holds, and gives back the rest for later', () => {
    const l = aligned()
    const r = planOriginRound(l, viewOf(l, all(8)), { segments: 2, chunks: 100 })
    expect(r.segments).toEqual([0, 1])
    expect(r.chunks).toEqual([0, 1, 2, 3])
    expect(r.reserved).toEqual([0, 1, 2, 3])
    expect(r.release).toEqual([4, 5, 6, 7])
  })

  it('the next round (the first still in flight) takes the following segments', () => {
    const l = aligned()
    // chunks 0-3 are in our first round: not open, not given again by the claim rule
    const r = planOriginRound(l, viewOf(l, [4, 5, 6, 7], { taken: s => s < 2, open: c => c >= 4 }), { segments: 2, chunks: 100 })
    expect(r.segments).toEqual([2, 3])
    expect(r.release).toEqual([])
  })

  it('a segment whose anchor another agent was given is its: our chunks of it go back, to come from that agent over the LAN', () => {
    const l = aligned()
    // the claim rule split the chunks: we have 0, 1, 2 (anchor of segment 0 is chunk 1: ours), the other agent 3 (anchor of segment 1)
    const r = planOriginRound(l, viewOf(l, [0, 1, 2]), { segments: 4, chunks: 100 })
    expect(r.segments).toEqual([0])
    expect(r.reserved).toEqual([0, 1])
    expect(r.release).toEqual([2])
  })

  it('the owner answers for every open chunk of its segment, those the claim rule gave others included', () => {
    const l = aligned()
    // we were given chunk 3 (segment 1's anchor) but not chunk 2, its other chunk
    const r = planOriginRound(l, viewOf(l, [3]), { segments: 4, chunks: 100 })
    expect(r.segments).toEqual([1])
    expect(r.chunks).toEqual([2, 3])
    expect(r.reserved).toEqual([3]) // only what we reserved is released on failure
  })

  it('a segment mostly held already (the cost rule says batch) is still ours: its open chunks go in a batch', () => {
    const l = aligned()
    // 3 of segment 0's 6 blocks are needed: under 1 / 1.1
    const r = planOriginRound(l, viewOf(l, [0, 1], { needed: s => (s === 0 ? 3 : 6) }), { segments: 4, chunks: 100 })
    expect(r.segments).toEqual([])
    expect(r.chunks).toEqual([0, 1])
    expect(r.release).toEqual([])
  })

  it('a segment whose anchor is settled (held here or by a peer) goes per chunk: ours in a batch, whole if all its open chunks are ours', () => {
    const l = aligned()
    // chunk 1 (segment 0's anchor) came from the host index; chunk 0 is ours, so is the whole open rest: whole segment
    const settled = viewOf(l, [0], { open: c => c !== 1 })
    expect(planOriginRound(l, settled, { segments: 4, chunks: 100 }).segments).toEqual([0])
    const l3 = segmentLayout(manifestOfCounts([2, 2, 2]), 6) // one segment of 6 blocks, anchor chunk 2
    const shared = viewOf(l3, [0], { open: c => c !== 2 })
    // chunk 1 is open and not ours (another agent's claim): per chunk, chunk 0 in a batch
    const r = planOriginRound(l3, shared, { segments: 4, chunks: 100 })
    expect(r.segments).toEqual([])
    expect(r.chunks).toEqual([0])
    expect(r.reserved).toEqual([0])
  })

  it('chunks whose segment is in a round of ours already go per chunk, and batches stop at the round\'s chunk limit', () => {
    const l = aligned()
    const r = planOriginRound(l, viewOf(l, [0, 1, 2, 3], { taken: () => true }), { segments: 4, chunks: 3 })
    expect(r.segments).toEqual([])
    expect(r.chunks).toEqual([0, 1, 2])
    expect(r.release).toEqual([3])
  })

  it('a chunk not open (held by a peer, or in a round of ours) is given back, never fetched', () => {
    const l = aligned()
    const r = planOriginRound(l, viewOf(l, [0, 1], { open: c => c !== 0 }), { segments: 4, chunks: 100 })
    expect(r.release).toEqual([0])
    expect(r.reserved).toEqual([1])
  })

  it('a segment we hold the anchor of is taken even when none of its home chunks was given to us', () => {
    // chunks of 4 in segments of 5: chunk 1 anchors segment 0 but its home is segment 1
    const l = segmentLayout(manifestOfCounts([4, 4, 4]), 5)
    const r = planOriginRound(l, viewOf(l, [1]), { segments: 1, chunks: 100 })
    expect(r.segments).toEqual([0])
    // segment 0's home chunk 0 (the claim rule gave it to another agent) is answered for; chunk 1's home, segment 1, is another agent's (its anchor, chunk 2, is not ours)
    expect(r.chunks).toEqual([0])
    expect(r.release).toEqual([1])
  })
})
