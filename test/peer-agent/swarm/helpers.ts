/** Shared helpers of the swarm tests: a small image version in memory, coordinator keys, capabilities, nodes on 127.0.0.1. */
import { afterEach, expect } from 'vitest'
import { hashBytes } from '../../../chunker/blake3.ts'
import { signCapability } from '../../../protocol/capability.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../../../protocol/constants.ts'
import { createManifest, type Manifest } from '../../../protocol/manifest.ts'
import { createSwarm } from '../../../peer-agent/swarm/swarm.ts'
import type { ChunkProvider, Swarm, SwarmEvent, SwarmInit, SwarmSessionInit, SwarmSessionStats } from '../../../peer-agent/swarm/interface.ts'
import { createPrng } from '../../helpers/images.ts'

/** An image version: its manifest and every chunk's bytes. */
export interface TestVersion {
  manifest: Manifest
  chunks: Uint8Array[]
}

/**
 * `count` chunks of 1..maxBlocks random blocks each, as one image version. `compressible`: each
 * byte drawn from 16 values (zstd makes such chunks about 2x smaller), as disk images mostly are.
 */
export function makeVersion (seed: number, count: number, maxBlocks = 12, name = 'desk', version = 'v1', compressible = false): TestVersion {
  const prng = createPrng(seed)
  const chunks: Uint8Array[] = []
  const prefixes: Uint8Array[] = []
  const entries: Array<{ offset: number, length: number, digest: Uint8Array }> = []
  let offset = 0
  for (let i = 0; i < count; i++) {
    const bytes = prng.bytes(prng.int(1, maxBlocks) * BLOCK_SIZE).slice()
    if (compressible) for (let k = 0; k < bytes.length; k++) bytes[k] = 0x40 + (bytes[k] & 0x0f)
    chunks.push(bytes)
    entries.push({ offset, length: bytes.length, digest: hashBytes(bytes) })
    for (let b = 0; b < bytes.length; b += BLOCK_SIZE) prefixes.push(hashBytes(bytes.subarray(b, b + BLOCK_SIZE)).subarray(0, BLOCK_PREFIX_BYTES))
    offset += bytes.length
  }
  const blockPrefixes = new Uint8Array(prefixes.length * BLOCK_PREFIX_BYTES)
  prefixes.forEach((p, k) => { blockPrefixes.set(p, k * BLOCK_PREFIX_BYTES) })
  const manifest = createManifest({ name, version, size: offset, chunking: { minBlocks: 1, avgBlocks: 4, maxBlocks: 16 }, chunks: entries, blockPrefixes })
  return { manifest, chunks }
}

/** An in-memory ChunkProvider (the engine's is over its temp file): holds the chunks put into it. */
export interface MemoryProvider extends ChunkProvider {
  put: (index: number, bytes: Uint8Array) => void
  held: Map<number, Uint8Array>
}

/** A provider holding `initial` (index -> bytes); `corrupt` flips a byte of everything it serves. */
export function memoryProvider (initial: Iterable<[number, Uint8Array]> = [], corrupt = false): MemoryProvider {
  const held = new Map<number, Uint8Array>(initial)
  return {
    held,
    has: (i) => held.has(i),
    async read (i) {
      const b = held.get(i)
      if (b == null) throw new Error(`chunk ${i} not held`)
      if (!corrupt) return b
      const bad = b.slice()
      bad[bad.length >> 1] ^= 0xff
      return bad
    },
    put: (i, bytes) => { held.set(i, bytes) }
  }
}

/** The coordinator's signing key pair. */
export async function coordinatorKeys (): Promise<{ privateKey: CryptoKey, publicKeyRaw: Uint8Array }> {
  const pair = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
  return { privateKey: pair.privateKey, publicKeyRaw: new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)) }
}

/** A capability for `peer` to fetch image@version, valid `ttl` seconds (negative: already expired). */
export async function capabilityFor (privateKey: CryptoKey, peer: string, image = 'desk', version = 'v1', ttl = 300): Promise<Uint8Array> {
  return await signCapability({ image, version, peer, expires: Math.floor(Date.now() / 1000) + ttl }, privateKey)
}

/** A log that keeps its lines (for asserting the "clear log line"). */
export interface TestLog {
  lines: string[]
  info: (msg: string) => void
  warn: (msg: string) => void
  debug: (msg: string) => void
}

/** A collecting logger. */
export function testLog (): TestLog {
  const lines: string[] = []
  return { lines, info: (m) => { lines.push(m) }, warn: (m) => { lines.push(`warning: ${m}`) }, debug: (m) => { lines.push(`debug: ${m}`) } }
}

/** A swarm node on 127.0.0.1 (random port, no mDNS: multicast is off on loopback; no DHT unless asked). */
export async function startNode (publicKeyRaw: Uint8Array, init: Partial<SwarmInit> = {}, log = testLog()): Promise<{ swarm: Swarm, log: TestLog }> {
  const swarm = await createSwarm({ logger: log }, { coordinatorKey: publicKeyRaw, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, dht: false, ...init })
  return { swarm, log }
}

/**
 * The nodes a test file starts, all stopped after each test (registers the afterEach): `node` starts one,
 * `seedOf` one serving all of `v` as desk@v1.
 */
export function nodePool (): { node: (...args: Parameters<typeof startNode>) => Promise<Swarm>, seedOf: (v: TestVersion, ...args: Parameters<typeof startNode>) => Promise<Swarm> } {
  const nodes: Swarm[] = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })
  const node = async (...args: Parameters<typeof startNode>): Promise<Swarm> => {
    const { swarm } = await startNode(...args)
    nodes.push(swarm)
    return swarm
  }
  const seedOf = async (v: TestVersion, ...args: Parameters<typeof startNode>): Promise<Swarm> => {
    const seed = await node(...args)
    seed.serve({ image: 'desk', version: 'v1', chunkCount: v.chunks.length, provider: memoryProvider(v.chunks.entries()) })
    return seed
  }
  return { node, seedOf }
}

/** What a test session hands its chunks to (SwarmSessionInit's callbacks). */
export type TestSessionHandlers = Pick<SwarmSessionInit, 'onChunk' | 'onChunkParts' | 'lackingBlocks' | 'onChunkBlocks'>

/** A session of `me` for desk@v1 of `v` with `peers`, run until it has every chunk; its stats and events. */
export async function fetchFromPeers (me: Swarm, privateKey: CryptoKey, v: TestVersion, peers: Swarm[], handlers: TestSessionHandlers):
Promise<{ stats: SwarmSessionStats, events: SwarmEvent[] }> {
  const events: SwarmEvent[] = []
  const session = me.createSession({
    image: 'desk',
    version: 'v1',
    manifest: v.manifest,
    capability: await capabilityFor(privateKey, me.peerId),
    peers: peers.map(p => p.getMultiaddrs()[0]),
    onEvent: (e) => { events.push(e) },
    ...handlers
  })
  await session.start()
  await session.done
  const stats = session.stats()
  await session.close()
  return { stats, events }
}

/** The session banned `peerId`, only it, once, for `reason`, and took nothing from it. */
export function expectBannedOnly (result: { stats: SwarmSessionStats, events: SwarmEvent[] }, peerId: string, reason: RegExp): void {
  const bans = result.events.filter(e => e.type === 'peer.banned')
  expect(bans).toHaveLength(1)
  expect(bans[0]).toMatchObject({ peerId })
  expect((bans[0] as { reason: string }).reason).toMatch(reason)
  expect(result.stats.byPeer[peerId]).toBeUndefined()
  expect(result.stats.banned).toEqual([peerId])
}

/** A HAVE bitmap holding all of `count` chunks (bits past the count clear, as the decoder demands). */
export function fullHave (count: number): Uint8Array {
  const bitmap = new Uint8Array(Math.ceil(count / 8)).fill(0xff)
  if (count % 8 !== 0) bitmap[bitmap.length - 1] = (1 << (count % 8)) - 1
  return bitmap
}

/** Runs the sync engine's loop against a session: origin = `origin(i)`; returns when every needed chunk is held. */
export async function runEngineLoop (
  session: { start: () => Promise<void>, remaining: () => number, originChunks: (max?: number) => number[], markHave: (i: number) => void, waitForChange: (o?: { timeoutMs?: number }) => Promise<void> },
  provider: MemoryProvider,
  origin: (i: number) => Promise<Uint8Array>,
  batch = 4
): Promise<void> {
  await session.start()
  while (session.remaining() > 0) {
    const mine = session.originChunks(batch)
    if (mine.length === 0) { await session.waitForChange({ timeoutMs: 200 }); continue }
    for (const i of mine) {
      provider.put(i, await origin(i))
      session.markHave(i)
    }
  }
}
