/**
 * The settle wait of a session (SETTLE_MS): the claim rule hands out origin chunks once the peers
 * the rendezvous listed are connected or known not to come (issue 21: agents that start together
 * no longer wait 1.5 s for peers already there), and waits the whole SETTLE_MS only for a listed
 * peer not serving yet, as a lone agent, or when it joins peers that fetch from the origin already.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { bitmapSet, CLAIM_GROUP_CHUNKS, claimOwner } from '../../../protocol/block-exchange.ts'
import { SETTLE_MS, SETTLE_STARTING_MS } from '../../../peer-agent/swarm/constants.ts'
import { createSettleWait, holdsWhatWeLack } from '../../../peer-agent/swarm/settle.ts'
import type { Swarm, SwarmSession } from '../../../peer-agent/swarm/interface.ts'
import { capabilityFor, coordinatorKeys, makeVersion, memoryProvider, startNode, type TestVersion } from './helpers.ts'

const nodes: Swarm[] = []
const sessions: SwarmSession[] = []
afterEach(async () => {
  await Promise.all(sessions.splice(0).map(async s => { await s.close() }))
  await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
})

async function node (publicKeyRaw: Uint8Array): Promise<Swarm> {
  const { swarm } = await startNode(publicKeyRaw)
  nodes.push(swarm)
  return swarm
}

/** A peer serving a 16-group version, holding its first `held` chunks; `active`: still syncing it (a claim participant). */
async function peerServing (publicKeyRaw: Uint8Array, seed: number, held: number, active = true): Promise<{ v: TestVersion, count: number, peer: Swarm }> {
  const count = 16 * CLAIM_GROUP_CHUNKS
  const v = makeVersion(seed, count, 1)
  const peer = await node(publicKeyRaw)
  peer.serve({ image: 'desk', version: 'v1', chunkCount: count, provider: memoryProvider(v.chunks.slice(0, held).entries()), active })
  return { v, count, peer }
}

async function sessionOf (self: Swarm, privateKey: CryptoKey, v: TestVersion, peers: string[]): Promise<SwarmSession> {
  const provider = memoryProvider()
  const session = self.createSession({
    image: 'desk',
    version: 'v1',
    manifest: v.manifest,
    capability: await capabilityFor(privateKey, self.peerId),
    provider,
    peers,
    onChunk: async (i, bytes) => { provider.put(i, bytes.slice()) }
  })
  sessions.push(session)
  return session
}

/** The first origin chunks the claim rule hands out, asked at each change until `until` (performance.now()); [] if none by then. */
async function firstClaims (session: SwarmSession, until: number): Promise<number[]> {
  for (;;) {
    await session.waitForChange({ timeoutMs: 100 })
    const mine = session.originChunks()
    if (mine.length > 0 || performance.now() > until) return mine
  }
}

describe('createSettleWait (pure)', () => {
  it('waits for listed peers until each arrived, for a lone agent, and for a late join, never past the deadline', () => {
    const listed = createSettleWait(['a', 'b'])
    listed.begin(0, 1500, 4000)
    listed.joined(false)
    expect(listed.settling(10)).toBe(true)
    expect(listed.arrived('a')).toBe(false)
    expect(listed.arrived('x')).toBe(false) // not listed: changes nothing
    expect(listed.settling(10)).toBe(true)
    expect(listed.arrived('b')).toBe(true)
    expect(listed.settling(10)).toBe(false)
    const lone = createSettleWait([])
    lone.begin(0, 1500, 4000)
    lone.joined(false)
    expect(lone.settling(1499)).toBe(true)
    expect(lone.settling(1500)).toBe(false)
    const late = createSettleWait(['a'])
    late.begin(0, 1500, 4000)
    late.arrived('a')
    late.joined(true)
    expect(late.settling(1000)).toBe(true)
    expect(late.settling(1500)).toBe(false)
    // a peer not listed that says it does not serve the version yet is waited for too, while the wait lasts
    const starting = createSettleWait(['a'])
    starting.begin(0, 1500, 4000)
    starting.joined(false)
    starting.starting('x', 10)
    expect(starting.arrived('a')).toBe(false)
    expect(starting.settling(20)).toBe(true)
    expect(starting.arrived('x')).toBe(true)
    expect(starting.settling(20)).toBe(false)
    starting.starting('y', 1500) // too late: the wait is over
    expect(starting.settling(1400)).toBe(false)
  })

  it('waits past SETTLE_MS for a peer that said it is starting, until it comes or the longer deadline', () => {
    const wait = createSettleWait(['a', 'b'])
    wait.begin(0, 1500, 4000)
    wait.joined(false)
    expect(wait.arrived('a')).toBe(false)
    wait.starting('b', 100) // listed, answered NOT_SERVING: its sync is starting
    expect(wait.settling(1499)).toBe(true)
    expect(wait.settling(1500)).toBe(true) // before, the wait ended here and the claims left `b` out
    expect(wait.settling(3999)).toBe(true)
    expect(wait.settling(4000)).toBe(false) // it never came: claims without it
    expect(wait.arrived('b')).toBe(true)
    expect(wait.settling(2000)).toBe(false) // it came: claims at once, split with it
    // a listed peer not heard of (no answer yet) is waited for SETTLE_MS only, as before
    const silent = createSettleWait(['c'])
    silent.begin(0, 1500, 4000)
    silent.joined(false)
    expect(silent.settling(1499)).toBe(true)
    expect(silent.settling(1500)).toBe(false)
    // one starting peer arrived, another still starting: the wait goes on
    const two = createSettleWait([])
    two.begin(0, 1500, 4000)
    two.joined(false)
    two.starting('x', 10)
    two.starting('y', 20)
    expect(two.arrived('x')).toBe(false)
    expect(two.settling(2500)).toBe(true)
    expect(two.arrived('y')).toBe(true)
    expect(two.settling(2500)).toBe(false)
    // listed by the rendezvous after the start, not heard from: SETTLE_MS only (it may be an agent that has left)
    const later = createSettleWait(['a'])
    later.begin(0, 1500, 4000)
    later.joined(false)
    later.arrived('a')
    later.listedLater('z', 100)
    expect(later.settling(1499)).toBe(true)
    expect(later.settling(1500)).toBe(false)
    later.starting('z', 200) // then it says it is starting: waited for past SETTLE_MS
    expect(later.settling(3000)).toBe(true)
  })
})

describe('settle wait', () => {
  it('a session whose listed peers are all connected hands out its share of origin chunks at once', async () => {
    const keys = await coordinatorKeys()
    // another agent syncing the same version, holding nothing yet: a participant of the claim rule
    const { v, count, peer: other } = await peerServing(keys.publicKeyRaw, 22, 0)
    const self = await node(keys.publicKeyRaw)
    const session = await sessionOf(self, keys.privateKey, v, [other.getMultiaddrs()[0]])
    await session.start()
    expect(session.peers()).toEqual([other.peerId])
    // the claim rule splits the chunks between the two (16 claim groups: none ours only if all 16 fall to the other, 1 in 65,536)
    const ours = Array.from({ length: count }, (_, i) => i).filter(i => claimOwner(i, [self.peerId, other.peerId]) === self.peerId)
    expect(ours.length).toBeGreaterThan(0)
    expect(session.originChunks()).toEqual(ours)
  })

  it('a peer not listed that syncs the version but does not serve it yet (it registered after our list) is waited for like a listed one', async () => {
    const keys = await coordinatorKeys()
    const { v, count, peer: other } = await peerServing(keys.publicKeyRaw, 27, 0)
    const late = await node(keys.publicKeyRaw) // up, its sync not serving the version yet
    const self = await node(keys.publicKeyRaw)
    // known through an open connection (as after the manifest exchange), not through our rendezvous list
    await self.libp2p.dial(multiaddr(late.getMultiaddrs()[0]))
    const session = await sessionOf(self, keys.privateKey, v, [other.getMultiaddrs()[0]])
    const t0 = performance.now()
    await session.start()
    expect(session.peers()).toEqual([other.peerId])
    // before, the claims came at once, split with `other` alone
    expect(session.originChunks()).toEqual([])
    // `late` starts serving: it is dialled again (or dials us) and the claims are split three ways
    late.serve({ image: 'desk', version: 'v1', chunkCount: count, provider: memoryProvider(), active: true })
    const mine = await firstClaims(session, t0 + SETTLE_MS + 3000)
    const owners = [self.peerId, other.peerId, late.peerId]
    if (session.peers().length === 2) expect(mine).toEqual(Array.from({ length: count }, (_, i) => i).filter(i => claimOwner(i, owners) === self.peerId))
    else expect(performance.now() - t0).toBeGreaterThanOrEqual(SETTLE_MS - 50)
  })

  it('a peer the rendezvous lists only after the start (session.listed) is dialled and waited for too', async () => {
    const keys = await coordinatorKeys()
    const { v, count, peer: other } = await peerServing(keys.publicKeyRaw, 28, 0)
    const late = await node(keys.publicKeyRaw) // registered after our list, its sync not serving yet
    const self = await node(keys.publicKeyRaw)
    const session = await sessionOf(self, keys.privateKey, v, [other.getMultiaddrs()[0]])
    const t0 = performance.now()
    await session.start()
    session.listed([other.getMultiaddrs()[0], late.getMultiaddrs()[0]])
    // dialled, answers NOT_SERVING (starting): no claims until it comes or SETTLE_STARTING_MS has passed
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(session.originChunks()).toEqual([])
    const mine = await firstClaims(session, t0 + SETTLE_STARTING_MS + 3000)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(SETTLE_STARTING_MS - 50)
    expect(mine.length).toBeGreaterThan(0)
  })

  it('a stale peer the rendezvous lists again (an agent that has left, backed off) holds the claims SETTLE_MS at most', async () => {
    const keys = await coordinatorKeys()
    const { v, peer: other } = await peerServing(keys.publicKeyRaw, 30, 0)
    const gone = await node(keys.publicKeyRaw)
    const addr = gone.getMultiaddrs()[0]
    await gone.stop()
    const self = await node(keys.publicKeyRaw)
    const session = await sessionOf(self, keys.privateKey, v, [other.getMultiaddrs()[0]])
    const t0 = performance.now()
    await session.start()
    session.listed([addr]) // dialled: it fails, and the peer is backed off
    await new Promise(resolve => setTimeout(resolve, 300))
    session.listed([addr]) // listed again (its registration has not lapsed): not dialled while backed off
    const mine = await firstClaims(session, t0 + SETTLE_STARTING_MS + 3000)
    // counted as starting, it held every claim for SETTLE_STARTING_MS (a trim after a cold run, session 13)
    expect(performance.now() - t0).toBeLessThan(SETTLE_STARTING_MS - 500)
    expect(mine.length).toBeGreaterThan(0)
  })

  it('a listed peer that cannot be dialled (an agent that has left) is not waited for', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(23, 16, 2)
    const gone = await node(keys.publicKeyRaw)
    const addr = gone.getMultiaddrs()[0]
    await gone.stop()
    const session = await sessionOf(await node(keys.publicKeyRaw), keys.privateKey, v, [addr])
    await session.start()
    expect(session.peers()).toEqual([])
    expect(session.originChunks()).toHaveLength(16)
  })

  it('a listed peer that does not serve the version yet (starting) is waited for past SETTLE_MS, at most SETTLE_STARTING_MS', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(24, 16, 2)
    const late = await node(keys.publicKeyRaw) // up, but its sync has not started serving the version
    const session = await sessionOf(await node(keys.publicKeyRaw), keys.privateKey, v, [late.getMultiaddrs()[0]])
    const t0 = performance.now()
    await session.start()
    expect(session.originChunks()).toEqual([])
    const mine = await firstClaims(session, t0 + SETTLE_STARTING_MS + 3000)
    expect(mine).toHaveLength(16)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(SETTLE_STARTING_MS - 50)
  })

  it('a listed peer that starts serving after SETTLE_MS is still counted in the first claims', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(29, 16 * CLAIM_GROUP_CHUNKS, 1)
    const late = await node(keys.publicKeyRaw) // up, its sync starting: answers NOT_SERVING at first
    const self = await node(keys.publicKeyRaw)
    const session = await sessionOf(self, keys.privateKey, v, [late.getMultiaddrs()[0]])
    const t0 = performance.now()
    await session.start()
    expect(session.originChunks()).toEqual([])
    // its session starts well after SETTLE_MS (a busy machine), and it fetches from us, as a starting agent does
    await new Promise(resolve => setTimeout(resolve, SETTLE_MS + 500))
    expect(session.originChunks()).toEqual([]) // before, every chunk was claimed here, alone
    late.serve({ image: 'desk', version: 'v1', chunkCount: v.manifest.chunks.length, provider: memoryProvider(), active: true })
    const lateSession = await sessionOf(late, keys.privateKey, v, [self.getMultiaddrs()[0]])
    await lateSession.start()
    const mine = await firstClaims(session, t0 + SETTLE_STARTING_MS + 3000)
    expect(performance.now() - t0).toBeLessThan(SETTLE_STARTING_MS)
    const owners = [self.peerId, late.peerId]
    expect(mine).toEqual(Array.from({ length: v.manifest.chunks.length }, (_, i) => i).filter(i => claimOwner(i, owners) === self.peerId))
  })

  it('a session that joins peers already holding chunks (they claim from the origin already) waits SETTLE_MS', async () => {
    const keys = await coordinatorKeys()
    // an agent that started before us and has fetched the first half of the version
    const { v, count, peer: busy } = await peerServing(keys.publicKeyRaw, 25, 8 * CLAIM_GROUP_CHUNKS)
    const self = await node(keys.publicKeyRaw)
    const session = await sessionOf(self, keys.privateKey, v, [busy.getMultiaddrs()[0]])
    const t0 = performance.now()
    await session.start()
    expect(session.peers()).toEqual([busy.peerId])
    expect(session.originChunks()).toEqual([])
    // then the claim rule's share of the second half (8 claim groups: empty only if all 8 fall to the other, 1 in 256)
    const ours = Array.from({ length: count }, (_, i) => i).filter(i => i >= count / 2 && claimOwner(i, [self.peerId, busy.peerId]) === self.peerId)
    // ours may be empty (then nothing comes): look until just past SETTLE_MS
    const mine = await firstClaims(session, t0 + SETTLE_MS + 200)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(SETTLE_MS - 50)
    expect(mine).toEqual(ours)
  })

  it('a session that joins a peer that has finished (serving, not syncing: no round in flight) asks the origin at once for the rest', async () => {
    const keys = await coordinatorKeys()
    // a peer serving what it holds (half the version here), no longer syncing it: no claim participant
    const { v, count, peer: done } = await peerServing(keys.publicKeyRaw, 26, 8 * CLAIM_GROUP_CHUNKS, false)
    const session = await sessionOf(await node(keys.publicKeyRaw), keys.privateKey, v, [done.getMultiaddrs()[0]])
    await session.start()
    expect(session.peers()).toEqual([done.peerId])
    expect(session.originChunks()).toEqual(Array.from({ length: count / 2 }, (_, k) => count / 2 + k))
  })

  it('a lone session (no peer listed) waits SETTLE_MS: others that start with it may still be starting', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(21, 16, 2)
    const session = await sessionOf(await node(keys.publicKeyRaw), keys.privateKey, v, [])
    const t0 = performance.now()
    await session.start()
    expect(session.originChunks()).toEqual([])
    const mine = await firstClaims(session, t0 + SETTLE_MS + 3000)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(SETTLE_MS - 50)
    expect(mine).toHaveLength(16)
  })
})

describe('joining late', () => {
  it('is a peer holding a chunk we lack, not one holding only chunks we hold too (read from disks alike)', () => {
    const have = new Uint8Array(2)
    for (const i of [0, 3, 9]) bitmapSet(have, i)
    const ours = new Set([0, 3, 9, 12]) // the same host files, or the same older version: the same chunks
    expect(holdsWhatWeLack(have, 16, i => ours.has(i))).toBe(false)
    expect(holdsWhatWeLack(have, 16, i => i !== 9)).toBe(true) // chunk 9 came from elsewhere: the origin, its rounds
    expect(holdsWhatWeLack(new Uint8Array(2), 16, () => false)).toBe(false)
  })
})

