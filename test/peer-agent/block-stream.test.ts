/** peer-agent/block-stream.ts: whole blocks out of a byte stream however it is cut. */
import { describe, expect, it } from 'vitest'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { blockRunsOf, blocksOf } from '../../peer-agent/block-stream.ts'
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
})
