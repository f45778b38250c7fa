/** peer-agent/segment-plan.ts: the rule that takes a segment whole or leaves its blocks to a batch. */
import { describe, expect, it } from 'vitest'
import { planSegments } from '../../peer-agent/segment-plan.ts'
import { SEGMENT_BATCH_PENALTY } from '../../peer-agent/constants.ts'

describe('planSegments', () => {
  it('a cold client (every block missing) takes every segment', () => {
    expect(planSegments([{ bytes: 1000, blocks: 100, needed: 100 }, { bytes: 10, blocks: 3, needed: 3 }])).toEqual([0, 1])
  })

  it('a segment that lacks nothing is skipped', () => {
    expect(planSegments([{ bytes: 1000, blocks: 100, needed: 0 }])).toEqual([])
  })

  it('takes a segment when at least 1 / penalty of its blocks are missing, else leaves them to a batch', () => {
    const at = Math.ceil(100 / SEGMENT_BATCH_PENALTY)
    expect(planSegments([{ bytes: 1000, blocks: 100, needed: at }])).toEqual([0])
    expect(planSegments([{ bytes: 1000, blocks: 100, needed: at - 1 }])).toEqual([])
  })

  it('the penalty moves the line: 2 takes half-needed segments, 1 only full ones', () => {
    const segs = [{ bytes: 1000, blocks: 100, needed: 50 }, { bytes: 1000, blocks: 100, needed: 99 }, { bytes: 1000, blocks: 100, needed: 100 }]
    expect(planSegments(segs, 2)).toEqual([0, 1, 2])
    expect(planSegments(segs, 1)).toEqual([2])
  })

  it('bytes per block only scale both sides: the rule depends on the share missing, not on how well a segment compressed', () => {
    expect(planSegments([{ bytes: 10, blocks: 100, needed: 95 }, { bytes: 4_000_000, blocks: 100, needed: 95 }])).toEqual([0, 1])
  })
})
