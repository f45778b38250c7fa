/**
 * Claim rounds cut on segment boundaries (issue 19; pure, no I/O, test/peer-agent/lan-round-plan.test.ts).
 * With LAN sharing an agent fetches from the origin only what the claim rule gives it
 * (session.originChunks). When the version has compressed segments (protocol/segments.ts)
 * a round is made of whole segments: the agent that the claim rule gives a segment's
 * anchor chunk owns the segment, downloads it whole when the cost rule says so
 * (segment-plan.ts, counting every block of it still missing in the site) and answers for
 * every open chunk whose blocks end in it; the other agents give those chunks back and get
 * them from it over the LAN. Block batches remain for what is scattered (blocks a host
 * index or a peer already gave, chunks straddling two owners' segments).
 */
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { groupByPrefix } from '../protocol/prefix-groups.ts'
import { segmentsOf } from '../protocol/segments.ts'
import { LAN_ORIGIN_BATCH_BYTES, LAN_ORIGIN_MIN_ROUNDS, SEGMENT_BATCH_PENALTY } from './constants.ts'
import { planSegments } from './segment-plan.ts'

/** Where a version's chunks lie among its segments (computed once per sync). */
export interface SegmentLayout {
  /** The distinct blocks of each segment, as the coordinator cut them (segmentsOf). */
  blocks: Uint32Array[]
  /** Per block: the chunk it lies in. */
  chunkOf: Uint32Array
  /** Per chunk: its home, the last segment holding one of its blocks (a chunk is complete once its home is). */
  home: Uint32Array
  /** Per segment: the chunks whose home it is, ascending. */
  groups: number[][]
  /**
   * Per segment: the chunk where its last block first occurs. It completes only when the whole
   * segment has arrived, so it stays open (no peer holds it) while the owner downloads it.
   */
  anchor: Uint32Array
}

/** The layout of `manifest`'s chunks over segments of `segmentBlocks` distinct blocks. */
export function segmentLayout (manifest: Manifest, segmentBlocks: number): SegmentLayout {
  // a block lies in the segment of its prefix group's first block: group g is the g-th distinct block
  const { groupOf, firsts } = groupByPrefix(manifest.blockPrefixes)
  const blocks = segmentsOf(firsts, segmentBlocks)
  const chunkOf = new Uint32Array(groupOf.length)
  const home = new Uint32Array(manifest.chunks.length)
  const groups: number[][] = blocks.map(() => [])
  for (let c = 0; c < manifest.chunks.length; c++) {
    const { firstBlock, length } = manifest.chunks[c]
    const end = firstBlock + Math.ceil(length / BLOCK_SIZE)
    let last = 0
    for (let b = firstBlock; b < end; b++) {
      chunkOf[b] = c
      last = Math.max(last, Math.floor(groupOf[b] / segmentBlocks))
    }
    home[c] = last
    groups[last]?.push(c)
  }
  const anchor = Uint32Array.from(blocks, indices => chunkOf[indices[indices.length - 1]])
  return { blocks, chunkOf, home, groups, anchor }
}

/**
 * Segments per claim round: about LAN_ORIGIN_BATCH_BYTES of blocks and at least LAN_ORIGIN_MIN_ROUNDS
 * rounds per image (as claimRoundChunks), but never less than one whole segment.
 */
export function roundSegments (manifest: Manifest, segmentBlocks: number): number {
  const total = manifest.chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  const roundBytes = Math.min(LAN_ORIGIN_BATCH_BYTES, total / LAN_ORIGIN_MIN_ROUNDS)
  return Math.max(1, Math.floor(roundBytes / (segmentBlocks * BLOCK_SIZE)))
}

/** What the planner sees of the sync and the site now. */
export interface RoundView {
  /** Chunks the claim rule gave this agent now (reserved until fetched or released). */
  mine: ReadonlySet<number>
  /** Whether a chunk is still needed in the site: not verified here, held by no connected peer, in no round of ours. */
  open: (chunk: number) => boolean
  /** Whether a segment is in one of our rounds already (in flight or done). */
  taken: (segment: number) => boolean
  /** Distinct blocks of a segment still missing in the site (missing here and in no chunk a peer holds). */
  needed: (segment: number) => number
}

/** One claim round. */
export interface OriginRound {
  /** Segments to download whole. */
  segments: number[]
  /** Chunks the round answers for, ascending: what the segments leave missing of them goes in block batches. */
  chunks: number[]
  /** Of `chunks`, those the claim rule reserved for us (released on failure, given up if they do not verify). */
  reserved: number[]
  /** Chunks of `mine` given back: another agent's segment, or beyond this round's size. */
  release: number[]
}

/** How big a round may be: whole segments, and chunks whose blocks go in batches. */
export interface RoundLimits {
  segments: number
  chunks: number
}

/** What a round does with one segment's chunks. */
type SegmentRole = 'whole' | 'owned' | 'chunks' | 'other' | 'later'

/**
 * The next round from the chunks the claim rule gave us (`view.mine`). Per segment, by its
 * home chunks in `mine`:
 * - ours (the claim rule gave us its anchor, or the anchor is settled and every open chunk of
 *   the segment is ours): taken whole if the cost rule says so, its open chunks all answered for
 *   (`owned` when its blocks go in batches instead); beyond `limits.segments`, left for later;
 * - another agent's (its anchor is open and not ours): our chunks of it are given back;
 * - in a round of ours already, or settled with open chunks of others: per chunk, in batches.
 */
export function planOriginRound (layout: SegmentLayout, view: RoundView, limits: RoundLimits, penalty: number = SEGMENT_BATCH_PENALTY): OriginRound {
  const roles = new Map<number, SegmentRole>()
  const segments: number[] = []
  let batched = 0
  const roleOf = (s: number): SegmentRole => {
    let role = roles.get(s)
    if (role == null) roles.set(s, role = decide(s))
    return role
  }
  const decide = (s: number): SegmentRole => {
    if (view.taken(s)) return 'chunks'
    const anchor = layout.anchor[s]
    const ours = view.mine.has(anchor) || (!view.open(anchor) && layout.groups[s].every(c => view.mine.has(c) || !view.open(c)))
    if (!ours) return view.open(anchor) ? 'other' : 'chunks'
    if (segments.length >= limits.segments) return 'later'
    const whole = planSegments([{ bytes: 1, blocks: layout.blocks[s].length, needed: view.needed(s) }], penalty).length > 0
    if (!whole) return 'owned'
    segments.push(s)
    return 'whole'
  }
  // segments whose anchor we were given first, in image order (one may have no home chunk of ours)
  for (let s = 0; s < layout.anchor.length; s++) if (view.mine.has(layout.anchor[s])) roleOf(s)
  const chunks = new Set<number>()
  const reserved: number[] = []
  const release: number[] = []
  for (const c of [...view.mine].sort((a, b) => a - b)) {
    const role = view.open(c) ? roleOf(layout.home[c]) : 'other'
    const inBatch = role === 'owned' || role === 'chunks'
    if (role === 'other' || role === 'later' || (inBatch && batched >= limits.chunks)) {
      release.push(c)
      continue
    }
    if (inBatch) batched++
    chunks.add(c)
    reserved.push(c)
  }
  // the owner answers for the segment's open chunks the claim rule gave others: they give them back
  for (const [s, role] of roles) {
    if (role !== 'whole' && role !== 'owned') continue
    for (const c of layout.groups[s]) if (view.open(c)) chunks.add(c)
  }
  return { segments, chunks: [...chunks].sort((a, b) => a - b), reserved, release }
}
