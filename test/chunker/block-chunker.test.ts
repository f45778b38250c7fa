import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { hashBlocks } from '../../chunker/blake3.ts'
import { createBlockChunker, cutBlocks, digestWord, resolveChunking } from '../../chunker/block-chunker.ts'
import { DEFAULT_AVG_BLOCKS, DEFAULT_MAX_BLOCKS, DEFAULT_MIN_BLOCKS } from '../../chunker/constants.ts'
import { InvalidChunkingError } from '../../chunker/errors.ts'
import { BLOCK_SIZE, MAX_CHUNK_BLOCKS } from '../../protocol/constants.ts'
import { seededBytes } from '../helpers/images.ts'

const NUM_RUNS = Number(process.env.TRIMSWARM_PROPERTY_RUNS ?? 200)

/** Digests whose first 32 bits (little-endian) are `words`; the other 28 bytes are filler. */
function digestsOf (words: number[]): Uint8Array {
  const out = new Uint8Array(words.length * 32).fill(0xee)
  const view = new DataView(out.buffer)
  words.forEach((w, i) => { view.setUint32(i * 32, w, true) })
  return out
}

describe('resolveChunking', () => {
  it('applies the documented defaults', () => {
    expect(resolveChunking()).toEqual({ minBlocks: DEFAULT_MIN_BLOCKS, avgBlocks: DEFAULT_AVG_BLOCKS, maxBlocks: DEFAULT_MAX_BLOCKS })
    expect(resolveChunking({ avgBlocks: 32, maxBlocks: 128 })).toEqual({ minBlocks: DEFAULT_MIN_BLOCKS, avgBlocks: 32, maxBlocks: 128 })
  })

  it.each([
    [{ avgBlocks: 12 }, /power of two/],
    [{ minBlocks: 0 }, /minBlocks must be an integer/],
    [{ minBlocks: 2.5 }, /minBlocks must be an integer/],
    [{ maxBlocks: MAX_CHUNK_BLOCKS + 1 }, /maxBlocks must be an integer from 1 to 1024/],
    [{ minBlocks: 32, avgBlocks: 16 }, /minBlocks <= avgBlocks <= maxBlocks/],
    [{ avgBlocks: 64, maxBlocks: 32 }, /minBlocks <= avgBlocks <= maxBlocks/]
  ])('rejects %o', (init, message) => {
    expect(() => resolveChunking(init)).toThrow(InvalidChunkingError)
    expect(() => resolveChunking(init)).toThrow(message)
  })
})

describe('cut rule', () => {
  const p = { minBlocks: 2, avgBlocks: 4, maxBlocks: 6 } // mask 3

  it('reads the first 32 bits little-endian', () => {
    expect(digestWord(Uint8Array.from([1, 2, 3, 4]))).toBe(0x04030201)
    expect(digestWord(Uint8Array.from([0, 0, 0, 0x80]))).toBe(0x80000000)
    // 0x01000000 & 3 === 0 cuts, 0x00000001 & 3 !== 0 does not: only little-endian reading gives this
    const c = createBlockChunker(p)
    expect(c.push(Uint8Array.from([1, 0, 0, 0]))).toBe(false)
    expect(c.push(Uint8Array.from([0, 0, 0, 1]))).toBe(true)
  })

  it('cuts after a matching block once min is reached, and at max', () => {
    //            0  1  2  3  4  5  6  7  8  9  10 11
    const words = [0, 4, 1, 8, 1, 1, 1, 1, 1, 1, 1, 5]
    expect(cutBlocks(digestsOf(words), () => false, p)).toEqual([
      { firstBlock: 0, blocks: 2 }, // block 0 matches but is below min; block 1 matches (4 & 3 = 0)
      { firstBlock: 2, blocks: 2 }, // 8 & 3 = 0
      { firstBlock: 4, blocks: 6 }, // no match: cut at max
      { firstBlock: 10, blocks: 2 } // the image end closes the last chunk
    ])
  })

  it('ends a chunk at every zero block, even below min, and leaves zero blocks out', () => {
    const words = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    const zero = new Set([1, 4, 5, 9])
    expect(cutBlocks(digestsOf(words), i => zero.has(i), p)).toEqual([
      { firstBlock: 0, blocks: 1 },
      { firstBlock: 2, blocks: 2 },
      { firstBlock: 6, blocks: 3 }
    ])
  })

  it('tracks pending blocks and flushes them', () => {
    const c = createBlockChunker(p)
    const d = digestsOf([1, 1, 1])
    c.push(d, 0)
    c.push(d, 32)
    expect(c.pending).toBe(2)
    expect(c.flush()).toBe(2)
    expect(c.pending).toBe(0)
    expect(c.flush()).toBe(0)
  })

  it('on real digests of random blocks, chunks average about min - 1 + avg blocks', () => {
    const n = 8_000
    const digests = hashBlocks(seededBytes(5, n * BLOCK_SIZE))
    const runs = cutBlocks(digests, () => false)
    const mean = n / runs.length
    expect(mean).toBeGreaterThan(DEFAULT_MIN_BLOCKS - 1 + DEFAULT_AVG_BLOCKS * 0.8)
    expect(mean).toBeLessThan(DEFAULT_MIN_BLOCKS - 1 + DEFAULT_AVG_BLOCKS * 1.2)
  })

  it('runs tile exactly the non-zero blocks and obey the rule (property)', () => {
    const params = fc.record({ min: fc.integer({ min: 1, max: 4 }), avgLog: fc.integer({ min: 0, max: 3 }), extra: fc.integer({ min: 0, max: 6 }) })
      .filter(({ min, avgLog }) => min <= 2 ** avgLog)
      .map(({ min, avgLog, extra }) => ({ minBlocks: min, avgBlocks: 2 ** avgLog, maxBlocks: 2 ** avgLog + extra }))
    const blocks = fc.array(fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: null, freq: 4 }), { maxLength: 200 })
    fc.assert(fc.property(params, blocks, (p, bs) => {
      const words = bs.map(w => w ?? 0)
      const runs = cutBlocks(digestsOf(words), i => bs[i] === null, p)
      const covered = new Array<boolean>(bs.length).fill(false)
      let prevEnd = 0
      for (const r of runs) {
        expect(r.firstBlock).toBeGreaterThanOrEqual(prevEnd)
        expect(r.blocks).toBeGreaterThanOrEqual(1)
        expect(r.blocks).toBeLessThanOrEqual(p.maxBlocks)
        const end = r.firstBlock + r.blocks
        for (let i = r.firstBlock; i < end; i++) covered[i] = true
        // no earlier block of the chunk was a cut point
        for (let k = 1; k < r.blocks; k++) {
          expect(k >= p.minBlocks && (words[r.firstBlock + k - 1] & (p.avgBlocks - 1)) === 0).toBe(false)
        }
        // why it ended: max, a cut point, a zero block next, or the image end
        const cutPoint = r.blocks >= p.minBlocks && (words[end - 1] & (p.avgBlocks - 1)) === 0
        expect(r.blocks === p.maxBlocks || cutPoint || end === bs.length || bs[end] === null).toBe(true)
        prevEnd = end
      }
      bs.forEach((b, i) => { expect(covered[i]).toBe(b !== null) })
    }), { numRuns: NUM_RUNS })
  })
})
