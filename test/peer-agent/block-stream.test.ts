/** peer-agent/block-stream.ts: whole blocks out of a byte stream however it is cut; a whole frame decoded within its bound. */
import { createZstdCompress, zstdCompressSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { blockRunsOf, blocksOf, isDecodedTooLarge, unzstdWhole } from '../../peer-agent/block-stream.ts'
import { createPrng } from '../helpers/images.ts'

async function * piecesOf (bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  let at = 0
  for (const cut of [...cuts, bytes.length]) {
    yield bytes.slice(at, cut)
    at = cut
  }
}

describe('block stream', () => {
  it('block runs hold whole blocks only, and together the stream\'s bytes in order, however it is cut', async () => {
    const rand = createPrng(3)
    const bytes = rand.bytes(20 * BLOCK_SIZE)
    for (let trial = 0; trial < 30; trial++) {
      const cuts = Array.from({ length: rand.int(0, 12) }, () => rand.int(0, bytes.length)).sort((a, b) => a - b)
      const got: Uint8Array[] = []
      let runs = 0
      for await (const run of blockRunsOf(piecesOf(bytes, cuts))) {
        expect(run.length % BLOCK_SIZE).toBe(0)
        expect(run.length).toBeGreaterThan(0)
        got.push(run.slice()) // copied now: a run is valid until the next is asked for
        runs++
      }
      expect(Buffer.compare(Buffer.concat(got), bytes)).toBe(0)
      expect(runs).toBeLessThanOrEqual(2 * (cuts.length + 1))
    }
  })

  it('a piece of whole blocks comes out as one run; blocksOf gives its blocks one by one', async () => {
    const bytes = createPrng(4).bytes(3 * BLOCK_SIZE)
    const runs: number[] = []
    for await (const run of blockRunsOf(piecesOf(bytes, []))) runs.push(run.length)
    expect(runs).toEqual([3 * BLOCK_SIZE])
    const blocks: Uint8Array[] = []
    for await (const block of blocksOf(piecesOf(bytes, [100, 5000]))) blocks.push(block.slice())
    expect(blocks).toEqual([0, 1, 2].map(k => bytes.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE)))
  })

  it('a stream that ends mid-block is an error', async () => {
    const bytes = new Uint8Array(BLOCK_SIZE + 7)
    await expect((async () => { for await (const _ of blockRunsOf(piecesOf(bytes, [9]))) {} })()).rejects.toThrow(/ended mid-block \(7 extra bytes\)/)
  })

  it('a whole frame decodes into one buffer of exactly its bytes', () => {
    const raw = createPrng(4).bytes(64 * BLOCK_SIZE)
    const out = unzstdWhole(zstdCompressSync(raw), raw.length, 23)
    expect(Buffer.from(out).equals(Buffer.from(raw))).toBe(true)
    // one buffer, not pieces joined: the bound plus the 64 bytes that let zlib see the frame end
    expect(out.buffer.byteLength).toBe(raw.length + 64)
  })

  it('a decompression bomb (a 64 KiB frame of 1 GiB) stops at its bound: never more than the bound is held', async () => {
    // compressed piece by piece, so the test itself never holds the gigabyte
    const enc = createZstdCompress()
    const parts: Buffer[] = []
    enc.on('data', (d: Buffer) => parts.push(d))
    const zeros = Buffer.alloc(1 << 20)
    for (let i = 0; i < 1024; i++) if (!enc.write(zeros)) await new Promise(resolve => enc.once('drain', resolve))
    await new Promise(resolve => enc.end(resolve))
    const bomb = Buffer.concat(parts)
    expect(bomb.length).toBeLessThan(64 * 1024)
    const rssBefore = process.resourceUsage().maxRSS // KiB, the high-water mark
    let err: unknown
    try { unzstdWhole(bomb, 16 * BLOCK_SIZE, 23) } catch (e) { err = e }
    expect(isDecodedTooLarge(err)).toBe(true)
    // decoding it whole would have raised the high-water mark by a gigabyte
    expect(process.resourceUsage().maxRSS - rssBefore).toBeLessThan(64 * 1024)
  })

  it('a frame that is not zstd, or cut short, is an error, not a shorter buffer', () => {
    const raw = createPrng(5).bytes(8 * BLOCK_SIZE)
    const frame = zstdCompressSync(raw)
    expect(() => unzstdWhole(frame.subarray(0, frame.length - 8), raw.length, 23)).toThrow()
    expect(() => unzstdWhole(createPrng(6).bytes(1000), raw.length, 23)).toThrow()
  })
})
