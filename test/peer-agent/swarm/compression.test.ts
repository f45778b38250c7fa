/**
 * Compressed chunks on the LAN (BLOCKS_PROTOCOL_ZSTD, issue 21): the bounded decoder, the cache
 * of frames, peers of both protocol versions together, and hostile compressed frames.
 */
import { constants, createZstdCompress, zstdCompressSync } from 'node:zlib'
import { randomBytes, randomFillSync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { encodeMessageBytes, UnknownMessageTypeError } from '../../../protocol/block-exchange.ts'
import { createMessageDecoder } from '../../../protocol/message-decoder.ts'
import { BLOCKS_PROTOCOL, BLOCKS_PROTOCOL_ZSTD } from '../../../protocol/constants.ts'
import { decompressChunk, compressChunk } from '../../../peer-agent/swarm/chunk-compression.ts'
import { createCompressedCache } from '../../../peer-agent/swarm/compressed-cache.ts'
import { BadChunkError } from '../../../peer-agent/swarm/errors.ts'
import { frameStream } from '../../../peer-agent/swarm/framed-stream.ts'
import type { Swarm, SwarmEvent, SwarmSessionStats } from '../../../peer-agent/swarm/interface.ts'
import { capabilityFor, coordinatorKeys, expectBannedOnly, fetchFromPeers, fullHave, makeVersion, memoryProvider, nodePool, type TestVersion } from './helpers.ts'

const { node, seedOf } = nodePool()

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0
const total = (v: TestVersion): number => v.chunks.reduce((n, c) => n + c.length, 0)

/** A zstd frame that declares no content size and a window of 2^windowLog (streamed in two writes). */
async function streamedFrame (data: Uint8Array, windowLog: number): Promise<Buffer> {
  const z = createZstdCompress({ params: { [constants.ZSTD_c_windowLog]: windowLog } })
  const out: Buffer[] = []
  z.on('data', (d: Buffer) => out.push(d))
  const ended = new Promise(resolve => z.on('end', resolve))
  z.write(data.subarray(0, data.length >> 1))
  z.end(data.subarray(data.length >> 1))
  await ended
  return Buffer.concat(out)
}

describe('decompressChunk: a peer\'s zstd frame decoded within the chunk\'s length', () => {
  const chunk = Buffer.alloc(64 * 1024, 'abcd')

  it('decodes an honest frame to the chunk', async () => {
    const frame = compressChunk(chunk)
    expect(frame).not.toBeNull()
    expect(frame!.length).toBeLessThan(chunk.length / 8)
    expect(equalBytes(decompressChunk(3, frame!, chunk.length), chunk)).toBe(true)
  })

  it('a decompression bomb (a small frame of 64 MiB of zeros) fails at the chunk\'s length', async () => {
    const bomb = zstdCompressSync(Buffer.alloc(64 * 1024 * 1024))
    expect(bomb.length).toBeLessThan(8 * 1024)
    const before = process.memoryUsage().arrayBuffers
    expect(() => decompressChunk(7, bomb, chunk.length)).toThrow(new BadChunkError(`compressed chunk 7 decodes to more than its ${chunk.length} bytes`))
    // nothing near the 64 MiB was held
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024)
  })

  it('a frame cut short, garbage, or one that decodes to fewer bytes is a bad chunk', async () => {
    const frame = zstdCompressSync(chunk)
    expect(() => decompressChunk(1, frame.subarray(0, frame.length - 5), chunk.length)).toThrow(/compressed chunk 1 is not a valid zstd frame/)
    expect(() => decompressChunk(1, randomBytes(300), chunk.length)).toThrow(/compressed chunk 1 is not a valid zstd frame/)
    expect(() => decompressChunk(1, zstdCompressSync(chunk.subarray(0, 4096)), chunk.length))
      .toThrow(new BadChunkError(`compressed chunk 1 decodes to 4096 bytes, the manifest says ${chunk.length}`))
  })

  it('a frame asking for a window larger than any chunk (128 MiB) is refused, not allocated', async () => {
    const frame = await streamedFrame(chunk, 27)
    expect(() => decompressChunk(2, frame, chunk.length)).toThrow(/compressed chunk 2 is not a valid zstd frame \(.*too much memory/)
    // the same data with a window of one chunk decodes
    expect(equalBytes(decompressChunk(2, await streamedFrame(chunk, 17), chunk.length), chunk)).toBe(true)
  })

  it('a chunk is compressed only when its frame is at most 7/8 of it', () => {
    // random bytes in the first 3/4, zeros after: about 3/4 of its length compressed
    const chunk = Buffer.alloc(64 * 1024)
    randomFillSync(chunk.subarray(0, 48 * 1024))
    const frame = compressChunk(chunk)!
    expect(frame.length).toBeGreaterThan(48 * 1024)
    expect(frame.length).toBeLessThanOrEqual(56 * 1024)
    expect(equalBytes(decompressChunk(0, frame, chunk.length), chunk)).toBe(true)
    randomFillSync(chunk.subarray(0, 60 * 1024)) // now about 15/16: not worth it
    expect(compressChunk(chunk)).toBeNull()
  })

  it('an incompressible chunk is not compressed', async () => {
    expect(compressChunk(randomBytes(64 * 1024))).toBeNull()
  })
})

describe('BLOCK_ZSTD on the wire', () => {
  it('is a message only where the stream speaks 1.1.0; split anywhere it decodes the same', () => {
    const frame = zstdCompressSync(Buffer.alloc(8192, 'x'))
    const bytes = encodeMessageBytes({ type: 'block-zstd', index: 300, bytes: frame })
    // length (type + index + frame, under 128 here: one byte), type 0x09, index 300 as a varint
    expect([...bytes.subarray(0, 4)]).toEqual([frame.length + 3, 0x09, 0xac, 0x02])
    expect(() => createMessageDecoder().push(bytes)).toThrow(UnknownMessageTypeError)
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const d = createMessageDecoder({ compressedBlocks: true, blockParts: true })
      const got = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))]
      expect(got).toHaveLength(1)
      expect(got[0]).toMatchObject({ type: 'block-zstd', index: 300 })
      expect(Buffer.compare((got[0] as { bytes: Uint8Array }).bytes, frame)).toBe(0)
    }
    // an empty frame is malformed
    expect(() => createMessageDecoder({ compressedBlocks: true }).push(Uint8Array.of(3, 0x09, 0xac, 0x02))).toThrow(/BLOCK_ZSTD without a zstd frame/)
  })
})

describe('compressed-chunk cache', () => {
  it('holds at most its bytes, least recently used out first, and forgets a version', () => {
    const cache = createCompressedCache(3 * (1000 + 64))
    const frame = (n: number): Uint8Array => new Uint8Array(1000).fill(n)
    for (let i = 0; i < 3; i++) cache.set('d@v1', i, { rawLength: 4096, frame: frame(i) })
    expect(cache.get('d@v1', 0)?.frame?.[0]).toBe(0) // 0 is now the most recent
    cache.set('d@v1', 3, { rawLength: 4096, frame: frame(3) })
    expect(cache.get('d@v1', 1)).toBeUndefined()
    expect(cache.get('d@v1', 0)).toBeDefined()
    expect(cache.bytes).toBeLessThanOrEqual(3 * 1064)
    cache.set('d@v2', 0, { rawLength: 4096, frame: null })
    cache.drop('d@v1')
    expect(cache.get('d@v1', 0)).toBeUndefined()
    expect(cache.get('d@v2', 0)).toEqual({ rawLength: 4096, frame: null, version: 'd@v2' })
    expect(cache.bytes).toBe(64)
    // a frame over the whole bound is not kept
    cache.set('d@v2', 1, { rawLength: 1, frame: new Uint8Array(4000) })
    expect(cache.get('d@v2', 1)).toBeUndefined()
  })

  it('keeps a frame that is a view of a larger buffer as a copy of its own bytes, so what it counts is what it holds', () => {
    const cache = createCompressedCache(1 << 20)
    // a received frame inside a decrypted noise message, and compressChunk's frame in zlib's output buffer
    const message = Buffer.alloc(65_519, 7)
    cache.set('d@v1', 0, { rawLength: 96 * 1024, frame: message.subarray(100, 30_100) })
    const chunk = Buffer.alloc(96 * 1024, 'abcd')
    const made = compressChunk(chunk)!
    expect(made.buffer.byteLength).toBeGreaterThan(made.length) // the view zlib returns
    cache.set('d@v1', 1, { rawLength: chunk.length, frame: made })
    for (const [i, length] of [[0, 30_000], [1, made.length]]) {
      const kept = cache.get('d@v1', i)!.frame!
      expect(kept.length).toBe(length)
      expect(kept.buffer.byteLength).toBe(length)
    }
    expect(cache.bytes).toBe(2 * 64 + 30_000 + made.length)
    // a copy: the message's buffer may be reused, the kept frame stays as it was received
    message.fill(9)
    expect(cache.get('d@v1', 0)!.frame!.every(b => b === 7)).toBe(true)
    expect(equalBytes(decompressChunk(1, cache.get('d@v1', 1)!.frame!, chunk.length), chunk)).toBe(true)
    // a frame that is its whole buffer is kept as it is
    const whole = new Uint8Array(500).fill(1)
    cache.set('d@v1', 2, { rawLength: 4096, frame: whole })
    expect(cache.get('d@v1', 2)!.frame).toBe(whole)
  })
})

/** Fetches all of `v` from `peers` into a fresh session of `me`; what it got, its stats and events. */
async function fetchAll (me: Swarm, keys: Awaited<ReturnType<typeof coordinatorKeys>>, v: TestVersion, peers: Swarm[]):
Promise<{ got: Map<number, Uint8Array>, stats: SwarmSessionStats, events: SwarmEvent[] }> {
  const got = new Map<number, Uint8Array>()
  const { stats, events } = await fetchFromPeers(me, keys.privateKey, v, peers, { onChunk: async (index, bytes) => { got.set(index, bytes.slice()) } })
  for (const [i, bytes] of got) expect(equalBytes(bytes, v.chunks[i])).toBe(true)
  expect(got.size).toBe(v.chunks.length)
  return { got, stats, events }
}

describe('peers of both block-exchange versions on 127.0.0.1', () => {
  it('new to new: compressible chunks cross the LAN zstd-compressed, verified; the receiver passes the frames on uncompressed again', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(21, 48, 12, 'desk', 'v1', true)
    const seed = await seedOf(v, keys.publicKeyRaw)
    const middle = await node(keys.publicKeyRaw)
    const held = memoryProvider()
    middle.serve({ image: 'desk', version: 'v1', chunkCount: 48, provider: held })
    const first = await fetchAll(middle, keys, v, [seed])
    for (const [i, bytes] of first.got) held.put(i, bytes)
    expect(first.stats.bytesFromPeers).toBe(total(v))
    expect(first.stats.wireBytesFromPeers).toBeLessThan(total(v) * 0.6)
    expect(seed.stats().bytesServed).toBe(total(v))
    expect(seed.stats().bytesSent).toBe(first.stats.wireBytesFromPeers)
    // a third peer fetches from the middle one only: it gets the frames the middle one received
    const last = await node(keys.publicKeyRaw)
    const second = await fetchAll(last, keys, v, [middle])
    expect(second.stats.wireBytesFromPeers).toBe(first.stats.wireBytesFromPeers)
    expect(middle.stats().bytesSent).toBe(first.stats.wireBytesFromPeers)
  })

  it('an old peer (blocks 1.0.0 only) fetches from a new one and serves it: chunks go as they are', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(22, 24, 8, 'desk', 'v1', true)
    const fresh = await seedOf(v, keys.publicKeyRaw)
    const old = await node(keys.publicKeyRaw, { compressChunks: false })
    // the old peer's decoder does not know BLOCK_ZSTD: one would fail its stream
    const fromNew = await fetchAll(old, keys, v, [fresh])
    expect(fromNew.stats.wireBytesFromPeers).toBe(total(v))
    expect(fromNew.events.filter(e => e.type === 'peer.dropped' || e.type === 'peer.banned')).toEqual([])

    const oldSeed = await seedOf(v, keys.publicKeyRaw, { compressChunks: false })
    const me = await node(keys.publicKeyRaw)
    const fromOld = await fetchAll(me, keys, v, [oldSeed])
    expect(fromOld.stats.wireBytesFromPeers).toBe(total(v))
    expect(oldSeed.stats().bytesSent).toBe(total(v))
  })

  it('a raw 1.0.0 stream never carries a BLOCK_ZSTD; a 1.1.0 stream does', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(23, 4, 8, 'desk', 'v1', true)
    const fresh = await seedOf(v, keys.publicKeyRaw)
    const client = await node(keys.publicKeyRaw)
    const types: Record<string, string[]> = {}
    for (const protocol of [BLOCKS_PROTOCOL, BLOCKS_PROTOCOL_ZSTD]) {
      const framed = frameStream(await client.libp2p.dialProtocol(fresh.libp2p.getMultiaddrs()[0], protocol))
      await framed.send({ type: 'hello', capability: await capabilityFor(keys.privateKey, client.peerId) })
      await framed.send({ type: 'want', indices: [0, 1, 2, 3] })
      types[protocol] = []
      while (types[protocol].filter(t => t.startsWith('block')).length < 4) {
        const m = await framed.next(3000)
        if (m == null) break
        types[protocol].push(m.type)
      }
      framed.stream.abort(new Error('done'))
    }
    expect(types[BLOCKS_PROTOCOL].filter(t => t.startsWith('block'))).toEqual(['block', 'block', 'block', 'block'])
    expect(types[BLOCKS_PROTOCOL_ZSTD].filter(t => t.startsWith('block'))).toEqual(['block-zstd', 'block-zstd', 'block-zstd', 'block-zstd'])
  })
})

type HostileFrame = 'bomb' | 'wrong-bytes' | 'truncated' | 'short'

/** A node speaking blocks 1.1.0 whose every BLOCK_ZSTD is hostile in the given way (HAVE: everything). */
async function hostileZstdPeer (keysRaw: Uint8Array, v: TestVersion, mode: HostileFrame): Promise<Swarm> {
  const bad = await node(keysRaw, { compressChunks: false })
  const frameFor = (i: number): Uint8Array => {
    const chunk = v.chunks[i]
    if (mode === 'bomb') return zstdCompressSync(Buffer.alloc(chunk.length * 64, 0x41))
    if (mode === 'truncated') { const f = zstdCompressSync(chunk); return f.subarray(0, f.length - 4) }
    if (mode === 'short') return zstdCompressSync(chunk.subarray(0, chunk.length - 4096 > 0 ? chunk.length - 4096 : 1))
    const other = chunk.slice()
    other[0] ^= 1
    return zstdCompressSync(other)
  }
  await bad.libp2p.handle(BLOCKS_PROTOCOL_ZSTD, (stream) => {
    void (async () => {
      const framed = frameStream(stream)
      await framed.next(3000) // HELLO, not checked
      await framed.send({ type: 'have', active: false, count: v.chunks.length, bitmap: fullHave(v.chunks.length) })
      for (let m = await framed.next(); m != null; m = await framed.next()) {
        if (m.type !== 'want') continue
        await framed.sendBatch(m.indices.map(index => ({ type: 'block-zstd' as const, index, bytes: frameFor(index) })))
      }
    })().catch(() => { stream.abort(new Error('hostile peer done')) })
  })
  return bad
}

/** A zstd skippable frame (magic 0x184D2A50, little-endian length) of `n` bytes of content: decoders step over it. */
function skippableFrame (n: number): Uint8Array {
  const out = Buffer.alloc(8 + n, 0x55)
  out.writeUInt32LE(0x184D2A50, 0)
  out.writeUInt32LE(n, 4)
  return out
}

describe('hostile compressed frames', () => {
  it('a valid frame padded with a skippable frame is taken (it decodes right) but not forwarded as it came', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(31, 16, 4, 'desk', 'v1', true)
    const padder = await node(keys.publicKeyRaw, { compressChunks: false })
    const padded = (i: number): Uint8Array => Buffer.concat([zstdCompressSync(v.chunks[i]), skippableFrame(16 * 1024)])
    await padder.libp2p.handle(BLOCKS_PROTOCOL_ZSTD, (stream) => {
      void (async () => {
        const framed = frameStream(stream)
        await framed.next(3000)
        await framed.send({ type: 'have', active: false, count: 16, bitmap: Uint8Array.of(0xff, 0xff) })
        for (let m = await framed.next(); m != null; m = await framed.next()) {
          if (m.type === 'want') await framed.sendBatch(m.indices.map(index => ({ type: 'block-zstd' as const, index, bytes: padded(index) })))
        }
      })().catch(() => { stream.abort(new Error('done')) })
    })
    const middle = await node(keys.publicKeyRaw)
    const held = memoryProvider()
    middle.serve({ image: 'desk', version: 'v1', chunkCount: 16, provider: held })
    const first = await fetchAll(middle, keys, v, [padder])
    for (const [i, bytes] of first.got) held.put(i, bytes)
    expect(first.stats.banned).toEqual([])
    expect(first.stats.wireBytesFromPeers).toBeGreaterThan(16 * 16 * 1024)
    const last = await node(keys.publicKeyRaw)
    const second = await fetchAll(last, keys, v, [middle])
    // the middle node compressed the chunks itself: no padding crossed the LAN twice
    expect(second.stats.wireBytesFromPeers).toBeLessThan(first.stats.wireBytesFromPeers - 16 * 16 * 1024 + 1)
  })

  for (const [mode, reason] of [
    ['bomb', /decodes to more than its \d+ bytes/],
    ['wrong-bytes', /hash|digest|BLAKE3|mismatch/i],
    ['truncated', /is not a valid zstd frame/],
    ['short', /decodes to \d+ bytes, the manifest says/]
  ] as Array<[HostileFrame, RegExp]>) {
    it(`${mode}: the peer is banned, no bad byte is delivered, an honest peer supplies the chunks`, async () => {
      const keys = await coordinatorKeys()
      const v = makeVersion(30, 32, 6, 'desk', 'v1', true)
      const bad = await hostileZstdPeer(keys.publicKeyRaw, v, mode)
      // slow enough that the hostile peer is connected and asked before the seed has sent everything: at 1 MB/s a run under
      // a full suite's load (one rehearsal of three, session 10) had every chunk from the seed within 0.56 s and never
      // asked the hostile peer, most likely connected too late; at 200 kB/s the seed needs about 1.4 s
      const seed = await seedOf(v, keys.publicKeyRaw, { uploadBps: 200_000 })
      const me = await node(keys.publicKeyRaw)
      expectBannedOnly(await fetchAll(me, keys, v, [bad, seed]), bad.peerId, reason)
    })
  }
})
