/**
 * The cost rule that chooses, per compressed segment, between downloading it
 * whole and asking for the blocks it still lacks in a block batch (pure, no
 * I/O; test/peer-agent/segment-plan.test.ts).
 */
import { SEGMENT_BATCH_PENALTY } from './constants.ts'

/** What the rule knows of one segment. */
export interface SegmentCost {
  /** Compressed bytes of the whole segment. */
  bytes: number
  /** Distinct blocks in it. */
  blocks: number
  /** Of those, blocks this client still misses. */
  needed: number
}

/**
 * Indices of the segments to download whole: those that lack nothing are
 * skipped; a segment is taken when `bytes <= needed x bytes/blocks x penalty`,
 * i.e. when at least 1/penalty of its blocks are missing (a cold client takes
 * every segment). The rest of the missing blocks are left to block batches.
 */
export function planSegments (segments: readonly SegmentCost[], penalty: number = SEGMENT_BATCH_PENALTY): number[] {
  const take: number[] = []
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]
    if (s.needed <= 0 || s.blocks <= 0) continue
    if (s.bytes <= (s.needed * s.bytes / s.blocks) * penalty) take.push(i)
  }
  return take
}
