/**
 * The decisions of LAN sharing (pure, no I/O; docs/ARCHITECTURE.md "Swarm", "In the agent"):
 * which agent of a site downloads the signed manifest or takes the delta pack (the lowest peer
 * id), how long the others wait, how big a claim round is, and which blocks of the claimed
 * chunks go into one block batch.
 */
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { LAN_MANIFEST_FETCH_WAIT_MS, LAN_MANIFEST_LEADER_WAIT_MS, LAN_ORIGIN_BATCH_BYTES, LAN_ORIGIN_MIN_ROUNDS } from './constants.ts'
import { prefixKey } from './local-sources.ts'

/** The agent of a site that does a job once for all (the manifest download, the delta pack): the lowest peer id. */
export function siteLeader (self: string, others: Iterable<string>): string {
  return [self, ...others].sort()[0]
}

/**
 * Chunks claimed from the origin per round: about LAN_ORIGIN_BATCH_BYTES, and at least
 * LAN_ORIGIN_MIN_ROUNDS rounds per image, so a peer that joins late re-divides what is not
 * claimed yet and what two agents both fetch is bounded by one round.
 */
export function claimRoundChunks (manifest: Manifest): number {
  const total = manifest.chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  const roundBytes = Math.min(LAN_ORIGIN_BATCH_BYTES, total / LAN_ORIGIN_MIN_ROUNDS)
  return Math.max(1, Math.floor(roundBytes * manifest.chunks.length / Math.max(1, total)))
}

/** The missing blocks of `chunks`, one per distinct block digest prefix (each distinct block is fetched once). */
export function claimedMissingBlocks (manifest: Manifest, chunks: readonly number[], isMissing: (block: number) => boolean): number[] {
  const seen = new Set<bigint>()
  const blocks: number[] = []
  for (const ci of chunks) {
    const chunk = manifest.chunks[ci]
    const count = chunk.length / BLOCK_SIZE
    for (let k = 0; k < count; k++) {
      const block = chunk.firstBlock + k
      if (!isMissing(block)) continue
      const key = prefixKey(manifest.blockPrefixes, block)
      if (seen.has(key)) continue
      seen.add(key)
      blocks.push(block)
    }
  }
  return blocks
}

/** What the peers of the site answered about a manifest this round (undefined: no answer). */
export interface ManifestAnswerStatus {
  id: string
  status: 'manifest' | 'fetching' | 'not-held' | 'refused' | undefined
}

/** The manifest election's clocks, kept across rounds (performance.now() times). */
export interface ManifestElection {
  /** Since when no peer held or fetched the manifest while a lower peer id than ours wanted it. */
  leaderWaitSince?: number
  /** Since when a peer says it is downloading the manifest. */
  fetchingSince?: number
}

/** What the manifest election says to do next (manifestStep). */
export type ManifestStep = 'wait' | 'fetch-stalled' | 'leader' | 'leader-stalled'

/**
 * What to do after a round of asking the site's peers for the manifest (none had a good one):
 * - `wait`: ask again soon;
 * - `fetch-stalled`: a peer says it downloads it, but for over LAN_MANIFEST_FETCH_WAIT_MS: download it;
 * - `leader`: no peer downloads it and we have the lowest peer id of those wanting it: download it;
 * - `leader-stalled`: a lower peer id wants it but has not started for LAN_MANIFEST_LEADER_WAIT_MS: download it.
 */
export function manifestStep (answers: readonly ManifestAnswerStatus[], self: string, election: ManifestElection, now: number): ManifestStep {
  if (answers.some(a => a.status === 'fetching')) {
    election.leaderWaitSince = undefined
    election.fetchingSince ??= now
    return now - election.fetchingSince > LAN_MANIFEST_FETCH_WAIT_MS ? 'fetch-stalled' : 'wait'
  }
  election.fetchingSince = undefined
  const wanting = answers.filter(a => a.status === 'not-held').map(a => a.id)
  if (siteLeader(self, wanting) === self) return 'leader'
  election.leaderWaitSince ??= now
  return now - election.leaderWaitSince > LAN_MANIFEST_LEADER_WAIT_MS ? 'leader-stalled' : 'wait'
}

/**
 * While the site's delta-pack agent is connected, the others take nothing from the origin until
 * it has given them no chunk for `stallMs`: tracks the last time the remaining count fell.
 */
export interface LeaderWatch {
  /** Whether to keep waiting for the leader, given the chunks remaining now. */
  waiting: (remaining: number, now: number) => boolean
}

/** A watch starting at `remaining` chunks at `now`. */
export function createLeaderWatch (remaining: number, now: number, stallMs: number): LeaderWatch {
  let lastRemaining = remaining
  let lastProgressAt = now
  return {
    waiting (remainingNow, at) {
      if (remainingNow < lastRemaining) { lastRemaining = remainingNow; lastProgressAt = at }
      return at - lastProgressAt < stallMs
    }
  }
}
