import { connect } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { hashBytes } from '../../../chunker/blake3.ts'
import { ErrorCode, type ExchangeMessage } from '../../../protocol/block-exchange.ts'
import { BLOCKS_PROTOCOL } from '../../../protocol/constants.ts'
import { signCapability } from '../../../protocol/capability.ts'
import { frameStream } from '../../../peer-agent/swarm/framed-stream.ts'
import type { Swarm, SwarmEvent } from '../../../peer-agent/swarm/interface.ts'
import { capabilityFor, coordinatorKeys, makeVersion, memoryProvider, runEngineLoop, startNode } from './helpers.ts'

const nodes: Swarm[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

async function node (...args: Parameters<typeof startNode>): ReturnType<typeof startNode> {
  const r = await startNode(...args)
  nodes.push(r.swarm)
  return r
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

/** Opens a raw block-exchange stream to `target` and sends `messages`; returns every message the server answers until it closes. */
async function exchange (from: Swarm, target: Swarm, send: Array<ExchangeMessage | Uint8Array>): Promise<ExchangeMessage[]> {
  const stream = await from.libp2p.dialProtocol(multiaddr(target.getMultiaddrs()[0]), BLOCKS_PROTOCOL)
  const framed = frameStream(stream)
  for (const m of send) {
    if (m instanceof Uint8Array) stream.send(m)
    else await framed.send(m)
  }
  const got: ExchangeMessage[] = []
  try {
    for (let m = await framed.next(3000); m != null; m = await framed.next(3000)) {
      got.push(m)
      if (m.type === 'error') break // the server closes after an ERROR; no need to wait for it
    }
  } catch (err) {
    got.push({ type: 'error', code: -1, message: `client side: ${(err as Error).message}` })
  }
  stream.abort(new Error('done'))
  return got
}

describe('LAN swarm over libp2p on 127.0.0.1', () => {
  it('two empty peers fetch every chunk, verified, from a seed and from each other while still downloading', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(1, 96, 12)
    // The seed's upload cap makes it the bottleneck, so the two downloaders must trade what they already have.
    const { swarm: seed } = await node(keys.publicKeyRaw, { uploadBps: 1_000_000 })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 96, provider: memoryProvider(v.chunks.entries()) })
    const a = (await node(keys.publicKeyRaw)).swarm
    const b = (await node(keys.publicKeyRaw)).swarm
    const runs = [a, b].map(async (self, k) => {
      const other = k === 0 ? b : a
      const provider = memoryProvider()
      const fromPeer: Array<{ index: number, peer: string, at: number }> = []
      const session = self.createSession({
        image: 'desk',
        version: 'v1',
        manifest: v.manifest,
        capability: await capabilityFor(keys.privateKey, self.peerId),
        provider,
        peers: [seed.getMultiaddrs()[0], other.getMultiaddrs()[0]],
        onChunk: async (index, bytes, peer) => {
          expect(equalBytes(hashBytes(bytes), v.manifest.chunks[index].digest)).toBe(true)
          provider.put(index, bytes.slice())
          fromPeer.push({ index, peer, at: performance.now() })
        }
      })
      await session.start()
      await session.done
      const doneAt = performance.now()
      const stats = session.stats()
      await session.close()
      return { provider, fromPeer, doneAt, stats }
    })
    const [ra, rb] = await Promise.all(runs)
    for (const r of [ra, rb]) {
      expect(r.provider.held.size).toBe(96)
      for (const [i, bytes] of r.provider.held) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
      expect(r.stats.bytesFromPeers).toBe(v.chunks.reduce((s, c) => s + c.length, 0))
    }
    // Each got chunks from the other, and before the other had finished (in-progress sharing).
    const aFromB = ra.fromPeer.filter(x => x.peer === b.peerId)
    const bFromA = rb.fromPeer.filter(x => x.peer === a.peerId)
    expect(aFromB.length).toBeGreaterThan(0)
    expect(bFromA.length).toBeGreaterThan(0)
    expect(Math.min(...aFromB.map(x => x.at))).toBeLessThan(rb.doneAt)
    expect(Math.min(...bFromA.map(x => x.at))).toBeLessThan(ra.doneAt)
  })

  it('agents starting together split the origin fetches by the claim rule and take the rest from each other', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(2, 120, 4)
    const agents = await Promise.all([0, 1, 2].map(async () => (await node(keys.publicKeyRaw)).swarm))
    const addrs = agents.map(s => s.getMultiaddrs()[0])
    let originChunks = 0
    const origin = async (i: number): Promise<Uint8Array> => {
      originChunks++
      await new Promise(resolve => setTimeout(resolve, 5)) // a WAN round trip, short
      return v.chunks[i]
    }
    const results = await Promise.all(agents.map(async (self) => {
      const provider = memoryProvider()
      const session = self.createSession({
        image: 'desk',
        version: 'v1',
        manifest: v.manifest,
        capability: await capabilityFor(keys.privateKey, self.peerId),
        provider,
        peers: addrs.filter(a => !a.includes(self.peerId)),
        onChunk: async (index, bytes) => { provider.put(index, bytes.slice()) }
      })
      await runEngineLoop(session, provider, origin)
      const stats = session.stats()
      await session.close()
      return { provider, stats }
    }))
    for (const r of results) {
      expect(r.provider.held.size).toBe(120)
      for (const [i, bytes] of r.provider.held) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
    }
    // What one agent took from the origin the others took from it (claim groups of CLAIM_GROUP_CHUNKS:
    // which agent fetches how many depends on how the groups fall on the peer ids).
    const fromPeers = results.reduce((s, r) => s + r.stats.chunksFromPeers, 0)
    expect(fromPeers).toBeGreaterThanOrEqual(3 * 120 - Math.floor(120 * 1.15))
    // Each chunk crossed the "WAN" about once, not three times.
    expect(originChunks).toBeGreaterThanOrEqual(120)
    expect(originChunks).toBeLessThanOrEqual(120 * 1.15)
  })

  it('a peer without a valid capability learns nothing, not even the have-map', async () => {
    const keys = await coordinatorKeys()
    const other = await coordinatorKeys()
    const v = makeVersion(3, 8, 2)
    const { swarm: seed, log } = await node(keys.publicKeyRaw)
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 8, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: intruder } = await node(keys.publicKeyRaw)
    const now = Math.floor(Date.now() / 1000)
    const cases: Record<string, Uint8Array> = {
      'for another peer id': await capabilityFor(keys.privateKey, seed.peerId),
      expired: await signCapability({ image: 'desk', version: 'v1', peer: intruder.peerId, expires: now - 3600 }, keys.privateKey),
      forged: await capabilityFor(other.privateKey, intruder.peerId),
      garbage: new Uint8Array([0xa1, 0x61, 0x78, 0x01])
    }
    for (const [what, capability] of Object.entries(cases)) {
      const got = await exchange(intruder, seed, [{ type: 'hello', capability }, { type: 'want', indices: [0, 1, 2] }])
      expect(got, what).toEqual([{ type: 'error', code: ErrorCode.UNAUTHORIZED, message: 'capability refused' }])
    }
    // No HELLO at all: a WANT first is refused the same way.
    const noHello = await exchange(intruder, seed, [{ type: 'want', indices: [0] }])
    expect(noHello.map(m => m.type)).toEqual(['error'])
    expect(log.lines.filter(l => l.includes('refused peer')).length).toBe(4)
    // Through the session API: a capability for another version gets nothing from the seed.
    const session = intruder.createSession({
      image: 'desk',
      version: 'v1',
      manifest: v.manifest,
      capability: await capabilityFor(keys.privateKey, intruder.peerId, 'desk', 'v2'),
      peers: [seed.getMultiaddrs()[0]],
      onChunk: async () => { throw new Error('must not get a chunk') }
    })
    await session.start()
    await session.waitForChange({ timeoutMs: 300 })
    expect(session.stats().bytesFromPeers).toBe(0)
    expect(session.availability(0)).toBe(0)
    expect(session.remaining()).toBe(8)
    await session.close()
  })

  it('a peer serving corrupted chunks is banned and no bad byte is delivered', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(4, 40, 4)
    // A real agent whose provider corrupts every chunk it serves (the test-only bad peer), and an honest seed.
    const { swarm: bad } = await node(keys.publicKeyRaw)
    bad.serve({ image: 'desk', version: 'v1', chunkCount: 40, provider: memoryProvider(v.chunks.entries(), true) })
    const { swarm: seed } = await node(keys.publicKeyRaw, { uploadBps: 1_000_000 })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 40, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: me } = await node(keys.publicKeyRaw)
    const events: SwarmEvent[] = []
    const got = new Map<number, Uint8Array>()
    const session = me.createSession({
      image: 'desk',
      version: 'v1',
      manifest: v.manifest,
      capability: await capabilityFor(keys.privateKey, me.peerId),
      peers: [bad.getMultiaddrs()[0], seed.getMultiaddrs()[0]],
      onEvent: (e) => { events.push(e) },
      onChunk: async (index, bytes) => { got.set(index, bytes.slice()) }
    })
    await session.start()
    await session.done
    expect(got.size).toBe(40)
    for (const [i, bytes] of got) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
    const bans = events.filter(e => e.type === 'peer.banned')
    expect(bans.length).toBe(1)
    expect(bans[0]).toMatchObject({ type: 'peer.banned', peerId: bad.peerId })
    expect(session.stats().banned).toEqual([bad.peerId])
    expect(session.stats().byPeer[bad.peerId]).toBeUndefined()
    expect(session.peers()).not.toContain(bad.peerId)
    await session.close()
  })

  it('onChunkParts: big chunks come verified as the pieces they arrived in (not copied); a corrupting peer is still banned', async () => {
    const keys = await coordinatorKeys()
    // Chunks up to 64 blocks (256 KiB): most span noise messages (65519 bytes), so they arrive in pieces.
    const v = makeVersion(9, 16, 64)
    const { swarm: bad } = await node(keys.publicKeyRaw)
    bad.serve({ image: 'desk', version: 'v1', chunkCount: 16, provider: memoryProvider(v.chunks.entries(), true) })
    // The honest seed's cap keeps it busy long enough that the bad peer, however late it connects, gets requests.
    const { swarm: seed } = await node(keys.publicKeyRaw, { uploadBps: 1_500_000 })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 16, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: me } = await node(keys.publicKeyRaw)
    const events: SwarmEvent[] = []
    const got = new Map<number, Uint8Array>()
    let split = 0
    const session = me.createSession({
      image: 'desk',
      version: 'v1',
      manifest: v.manifest,
      capability: await capabilityFor(keys.privateKey, me.peerId),
      peers: [bad.getMultiaddrs()[0], seed.getMultiaddrs()[0]],
      onEvent: (e) => { events.push(e) },
      onChunkParts: async (index, parts) => {
        if (parts.length > 1) split++
        got.set(index, Buffer.concat(parts))
      }
    })
    await session.start()
    await session.done
    expect(got.size).toBe(16)
    for (const [i, bytes] of got) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
    expect(split).toBeGreaterThan(0)
    expect(events.filter(e => e.type === 'peer.banned').map(e => e.peerId)).toEqual([bad.peerId])
    expect(session.stats().byPeer[bad.peerId]).toBeUndefined()
    expect(session.stats().bytesFromPeers).toBe(v.chunks.reduce((n, c) => n + c.length, 0))
    await session.close()
  })

  it('a stalled peer is dropped and its requests go to another peer', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(7, 24, 4)
    // A real agent whose disk never answers: it accepts requests and sends nothing.
    const { swarm: stuck } = await node(keys.publicKeyRaw)
    stuck.serve({ image: 'desk', version: 'v1', chunkCount: 24, provider: { has: () => true, read: async () => await new Promise<Uint8Array>(() => {}) } })
    // A slow honest seed, so the sync is still running when the stall is noticed.
    const { swarm: seed } = await node(keys.publicKeyRaw, { uploadBps: 150_000 })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 24, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: me } = await node(keys.publicKeyRaw)
    const events: SwarmEvent[] = []
    const got = new Map<number, Uint8Array>()
    const session = me.createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: await capabilityFor(keys.privateKey, me.peerId),
      peers: [stuck.getMultiaddrs()[0], seed.getMultiaddrs()[0]],
      stallTimeoutMs: 600,
      onEvent: (e) => { events.push(e) },
      onChunk: async (i, bytes) => { got.set(i, bytes) }
    })
    await session.start()
    await session.done
    expect(got.size).toBe(24)
    for (const [i, bytes] of got) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
    expect(events.some(e => e.type === 'peer.dropped' && e.peerId === stuck.peerId && e.reason.startsWith('stalled'))).toBe(true)
    expect(session.stats().byPeer[stuck.peerId]).toBeUndefined()
    await session.close()
  })

  it('a peer that stalls again waits twice as long before it is dialled again (slow-loris bound), and is not banned', async () => {
    const keys = await coordinatorKeys()
    const CHUNKS = 84
    const v = makeVersion(17, CHUNKS, 4)
    const { swarm: stuck } = await node(keys.publicKeyRaw)
    stuck.serve({ image: 'desk', version: 'v1', chunkCount: CHUNKS, provider: { has: () => true, read: async () => await new Promise<Uint8Array>(() => {}) } })
    // an honest seed slow enough that the sync outlasts two back-offs of the stalled peer, yet
    // sending a chunk well within the stall timeout (the seed itself must not look stalled)
    const backoffMs = 3000
    const total = v.chunks.reduce((n, c) => n + c.length, 0)
    const { swarm: seed } = await node(keys.publicKeyRaw, { uploadBps: Math.round(total / 14) })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: CHUNKS, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: me } = await node(keys.publicKeyRaw)
    const events: Array<SwarmEvent & { at: number }> = []
    const got = new Map<number, Uint8Array>()
    const session = me.createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: await capabilityFor(keys.privateKey, me.peerId),
      peers: [stuck.getMultiaddrs()[0], seed.getMultiaddrs()[0]],
      stallTimeoutMs: 1000,
      retryBackoffMs: backoffMs,
      onEvent: (e) => { if (e.peerId === stuck.peerId) events.push({ ...e, at: performance.now() }) },
      onChunk: async (i, bytes) => { got.set(i, bytes) }
    })
    await session.start()
    await session.done
    expect(got.size).toBe(CHUNKS)
    for (const [i, bytes] of got) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
    const drops = events.filter(e => e.type === 'peer.dropped')
    expect(drops.length, JSON.stringify(events)).toBeGreaterThanOrEqual(2)
    expect(drops[0].type === 'peer.dropped' && drops[0].reason).toMatch(/^stalled: /)
    expect(drops[1].type === 'peer.dropped' && drops[1].reason).toMatch(/^stalled: .*\(2 times\)$/)
    // each reconnect after the k-th drop waited at least backoff x 2^(k-1)
    for (let k = 0; k < drops.length; k++) {
      const next = events.find(e => e.type === 'peer.connected' && e.at > drops[k].at)
      if (next != null) expect(next.at - drops[k].at, `reconnect after drop ${k + 1}`).toBeGreaterThanOrEqual(backoffMs * 2 ** k - 50)
    }
    expect(events.filter(e => e.type === 'peer.banned')).toEqual([])
    await session.close()
  }, 60_000)

  it('caps from policy: the upload rate is held and peers over maxPeers are told BUSY', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(8, 40, 8)
    const total = v.chunks.reduce((n, c) => n + c.length, 0)
    const rate = 400_000
    const { swarm: seed } = await node(keys.publicKeyRaw, { uploadBps: rate, maxPeers: 1 })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 40, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: a } = await node(keys.publicKeyRaw)
    const { swarm: b } = await node(keys.publicKeyRaw)
    const t0 = performance.now()
    const session = a.createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: await capabilityFor(keys.privateKey, a.peerId),
      peers: [seed.getMultiaddrs()[0]],
      onChunk: async () => {}
    })
    await session.start()
    const second = await exchange(b, seed, [{ type: 'hello', capability: await capabilityFor(keys.privateKey, b.peerId) }])
    expect(second).toEqual([{ type: 'error', code: ErrorCode.BUSY, message: 'too many peers' }])
    await session.done
    const seconds = (performance.now() - t0) / 1000
    expect(session.stats().bytesFromPeers).toBe(total)
    // The seed counts every chunk byte it sent (its write may settle just after the peer has the chunk).
    const received = session.stats().bytesFromPeers + session.stats().duplicateBytes
    await vi.waitFor(() => { expect(seed.stats().bytesServed).toBe(received) })
    expect(seed.stats().byVersion).toEqual({ 'desk@v1': received })
    expect(a.stats().bytesServed).toBe(0)
    // RATE_BURST_SECONDS of burst is allowed on top of the rate.
    expect(seconds).toBeGreaterThan((total - rate * 0.25) / rate * 0.9)
    await session.close()
  })

  it('serving a version again (temp file, then the finished file) keeps subscribed peers and serves from the new provider', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(9, 16, 2)
    const { swarm: seed } = await node(keys.publicKeyRaw)
    const first = seed.serve({ image: 'desk', version: 'v1', chunkCount: 16, provider: memoryProvider([...v.chunks.entries()].slice(0, 8)), active: true })
    const { swarm: me } = await node(keys.publicKeyRaw)
    const got = new Map<number, Uint8Array>()
    const session = me.createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: await capabilityFor(keys.privateKey, me.peerId),
      peers: [seed.getMultiaddrs()[0]],
      onChunk: async (i, bytes) => { got.set(i, bytes) }
    })
    await session.start()
    while (got.size < 8) await session.waitForChange({ timeoutMs: 200 })
    expect(session.availability(12)).toBe(0)
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 16, provider: memoryProvider(v.chunks.entries()) })
    first.close() // an outdated handle: must not stop the new one
    await session.done
    expect(got.size).toBe(16)
    for (const [i, bytes] of got) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
    await session.close()
  })

  it('garbage on the port and malformed or oversized messages close the stream; the node keeps serving', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(5, 6, 2)
    const { swarm: seed, log } = await node(keys.publicKeyRaw)
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 6, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: peer } = await node(keys.publicKeyRaw)
    // Raw bytes on the TCP port (no libp2p handshake at all).
    const port = Number(multiaddr(seed.getMultiaddrs()[0]).getComponents().find(c => c.name === 'tcp')?.value)
    await new Promise<void>((resolve) => {
      const sock = connect(port, '127.0.0.1', () => { sock.write(new Uint8Array(8192).fill(0xab)) })
      sock.on('error', () => { resolve() })
      sock.on('close', () => { resolve() })
      setTimeout(() => { sock.destroy(); resolve() }, 1000)
    })
    const hello: ExchangeMessage = { type: 'hello', capability: await capabilityFor(keys.privateKey, peer.peerId) }
    const bad: Record<string, Uint8Array> = {
      'oversized frame': Uint8Array.from([0xff, 0xff, 0xff, 0x7f, 0x07]), // ~268 MB declared
      'oversized WANT': Uint8Array.from([0x80, 0x80, 0x04, 0x04]), // 64 KiB declared, WANT limit is smaller
      'unknown type': Uint8Array.from([0x02, 0x7e, 0x00]),
      'malformed WANT': Uint8Array.from([0x02, 0x04, 0x80]), // truncated varint
      'empty frame': Uint8Array.from([0x00])
    }
    for (const [what, bytes] of Object.entries(bad)) {
      const got = await exchange(peer, seed, [hello, bytes])
      expect(got[0]?.type, what).toBe('have') // the capability was fine
      expect(got.at(-1), what).toMatchObject({ type: 'error', code: ErrorCode.PROTOCOL })
    }
    expect(log.lines.filter(l => l.includes('closing stream from')).length).toBeGreaterThanOrEqual(5)
    expect(log.lines.join('\n')).toMatch(/MessageTooLargeError|UnknownMessageTypeError|MalformedMessageError/)
    // Still serving: a well-behaved session gets everything.
    const got = new Map<number, Uint8Array>()
    const session = peer.createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: hello.capability,
      peers: [seed.getMultiaddrs()[0]],
      onChunk: async (i, bytes) => { got.set(i, bytes) }
    })
    await session.start()
    await session.done
    expect(got.size).toBe(6)
    await session.close()
  })

  it('finds peers of an image version through provider records in the private DHT', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(6, 4, 1)
    const [holder, relay, seeker] = await Promise.all([0, 1, 2].map(async () => (await node(keys.publicKeyRaw, { dht: true })).swarm))
    await holder.addPeers([relay.getMultiaddrs()[0]])
    await seeker.addPeers([relay.getMultiaddrs()[0]])
    holder.serve({ image: 'desk', version: 'v1', chunkCount: 4, provider: memoryProvider(v.chunks.entries()) })
    await holder.announce('desk', 'v1', { signal: AbortSignal.timeout(10_000) })
    const found: string[] = []
    for await (const p of seeker.findProviders('desk', 'v1', { signal: AbortSignal.timeout(10_000) })) { found.push(p.peerId); break }
    expect(found).toEqual([holder.peerId])
    // A session with no configured peers finds the holder through the DHT and fetches.
    const got = new Map<number, Uint8Array>()
    const session = seeker.createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: await capabilityFor(keys.privateKey, seeker.peerId),
      onChunk: async (i, bytes) => { got.set(i, bytes) }
    })
    await session.start()
    await session.done
    expect(got.size).toBe(4)
    await session.close()
  })
})
