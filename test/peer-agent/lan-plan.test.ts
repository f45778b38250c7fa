/**
 * LAN sharing's decisions without a network (peer-agent/lan-plan.ts): the site leader, the
 * size of a claim round, the blocks of a claimed round (one per distinct prefix), the manifest
 * election and the wait for the site's delta-pack agent.
 */
import { describe, expect, it } from 'vitest'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { manifestOfCounts } from './lan-fixtures.ts'
import { LAN_MANIFEST_FETCH_WAIT_MS, LAN_MANIFEST_LEADER_WAIT_MS, LAN_ORIGIN_BATCH_BYTES, LAN_ORIGIN_MIN_ROUNDS } from '../../peer-agent/constants.ts'
import {
  claimedMissingBlocks, claimRoundChunks, createLeaderWatch, manifestStep, siteLeader, type ManifestAnswerStatus, type ManifestElection
} from '../../peer-agent/lan-plan.ts'

describe('lan plan', () => {
  it('the site leader is the lowest peer id, ourselves included', () => {
    expect(siteLeader('b', ['c', 'a'])).toBe('a')
    expect(siteLeader('a', ['c', 'b'])).toBe('a')
    expect(siteLeader('a', [])).toBe('a')
  })

  it('a claim round is LAN_ORIGIN_BATCH_BYTES of chunks, or 1/LAN_ORIGIN_MIN_ROUNDS of a small image, at least one chunk', () => {
    const big = manifestOfCounts(Array.from({ length: 4096 }, () => 16)) // 256 MiB in 64 KiB chunks
    expect(claimRoundChunks(big)).toBe(LAN_ORIGIN_BATCH_BYTES / (16 * BLOCK_SIZE))
    const small = manifestOfCounts(Array.from({ length: 64 }, () => 16)) // 4 MiB
    expect(claimRoundChunks(small)).toBe(64 / LAN_ORIGIN_MIN_ROUNDS)
    expect(claimRoundChunks(manifestOfCounts([1]))).toBe(1)
  })

  it('a claimed round asks for each missing distinct block once', () => {
    // blocks 0..7 in chunks of 4; blocks 1 and 5 share a prefix (the same content twice)
    const m = manifestOfCounts([4, 4], b => (b === 5 ? 2 : b + 1))
    const missing = new Set([0, 1, 2, 5, 6])
    expect(claimedMissingBlocks(m, [0, 1], b => missing.has(b))).toEqual([0, 1, 2, 6])
    expect(claimedMissingBlocks(m, [1], b => missing.has(b))).toEqual([5, 6])
    expect(claimedMissingBlocks(m, [], () => true)).toEqual([])
  })

  it('manifest election: the lowest id wanting it downloads it; the others wait, within bounds', () => {
    const answers = (list: Array<[string, ManifestAnswerStatus['status']]>): ManifestAnswerStatus[] => list.map(([id, status]) => ({ id, status }))
    // nobody has it and nobody lower wants it: we are the one
    expect(manifestStep(answers([['c', 'not-held'], ['d', undefined]]), 'b', {}, 0)).toBe('leader')
    // a lower id wants it: wait for it, up to LAN_MANIFEST_LEADER_WAIT_MS
    const lower: ManifestElection = {}
    expect(manifestStep(answers([['a', 'not-held']]), 'b', lower, 1000)).toBe('wait')
    expect(manifestStep(answers([['a', 'not-held']]), 'b', lower, 1000 + LAN_MANIFEST_LEADER_WAIT_MS)).toBe('wait')
    expect(manifestStep(answers([['a', 'not-held']]), 'b', lower, 1001 + LAN_MANIFEST_LEADER_WAIT_MS)).toBe('leader-stalled')
    // a peer downloading it: wait up to LAN_MANIFEST_FETCH_WAIT_MS, whoever is lowest
    const fetching: ManifestElection = {}
    expect(manifestStep(answers([['c', 'fetching']]), 'a', fetching, 0)).toBe('wait')
    expect(fetching.leaderWaitSince).toBeUndefined()
    expect(manifestStep(answers([['c', 'fetching']]), 'a', fetching, LAN_MANIFEST_FETCH_WAIT_MS + 1)).toBe('fetch-stalled')
    // a download that stops (the peer answers not-held again) restarts the fetch clock
    expect(manifestStep(answers([['a', 'not-held']]), 'b', fetching, LAN_MANIFEST_FETCH_WAIT_MS + 2)).toBe('wait')
    expect(fetching.fetchingSince).toBeUndefined()
  })

  it('the wait for the delta-pack agent lasts while it delivers, and ends after the stall time without progress', () => {
    const watch = createLeaderWatch(100, 0, 15_000)
    expect(watch.waiting(100, 14_999)).toBe(true)
    expect(watch.waiting(90, 15_000)).toBe(true) // progress resets the clock
    expect(watch.waiting(90, 29_999)).toBe(true)
    expect(watch.waiting(90, 30_000)).toBe(false)
  })
})
