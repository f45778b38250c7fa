/** protocol/segments.ts: which blocks each segment holds, and the check of a coordinator's table against the manifest. */
import { describe, expect, it } from 'vitest'
import { checkSegmentTable, distinctBlocks, SEGMENT_BLOCKS, SegmentTable, segmentsOf } from '../../protocol/segments.ts'
import { MAX_SEGMENT_BYTES } from '../../protocol/segments.ts'
import { BLOCK_SIZE, MAX_CHUNK_BLOCKS } from '../../protocol/constants.ts'

/** Block prefixes from small numbers (8 bytes each, big-endian). */
function prefixes (keys: number[]): Uint8Array {
  const out = new Uint8Array(keys.length * 8)
  const v = new DataView(out.buffer)
  keys.forEach((k, i) => { v.setBigUint64(i * 8, BigInt(k)) })
  return out
}

describe('segments', () => {
  it('distinct blocks are the first index of every prefix, ascending', () => {
    expect([...distinctBlocks(prefixes([5, 6, 5, 7, 6, 8]))]).toEqual([0, 1, 3, 5])
    expect([...distinctBlocks(prefixes([]))]).toEqual([])
  })

  it('segments cut the distinct blocks into runs of segmentBlocks, the last one shorter', () => {
    const d = distinctBlocks(prefixes(Array.from({ length: 10 }, (_, i) => i)))
    expect(segmentsOf(d, 4).map(s => [...s])).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
  })

  it('a whole segment at its worst (incompressible) still fits one block store object', () => {
    const raw = SEGMENT_BLOCKS * BLOCK_SIZE
    // zstd's ZSTD_COMPRESSBOUND: src + src/256 + (src < 128 KiB ? ... : 0), plus a frame header of at most 18 bytes
    expect(raw + (raw >> 8) + 18).toBeLessThanOrEqual(MAX_SEGMENT_BYTES)
    expect(MAX_SEGMENT_BYTES).toBe(MAX_CHUNK_BLOCKS * BLOCK_SIZE)
  })

  it('a table is accepted only for the same version and manifest with the counts the manifest gives', () => {
    const expect0 = { image: 'desk', version: 'v1', manifestCid: 'bafyr4iabc', distinctBlocks: 10 }
    const table = SegmentTable.parse({
      image: 'desk',
      version: 'v1',
      manifestCid: 'bafyr4iabc',
      segmentBlocks: 4,
      segments: [{ cid: 'bafkr4iaaa1', bytes: 100, blocks: 4 }, { cid: 'bafkr4iaaa2', bytes: 90, blocks: 4 }, { cid: 'bafkr4iaaa3', bytes: 50, blocks: 2 }]
    })
    expect(checkSegmentTable(table, expect0)).toBeUndefined()
    expect(checkSegmentTable(table, { ...expect0, manifestCid: 'bafyr4ixyz' })).toMatch(/not desk@v1/)
    expect(checkSegmentTable(table, { ...expect0, distinctBlocks: 13 })).toMatch(/lists 3 segments, the manifest's 13 distinct blocks make 4/)
    expect(checkSegmentTable({ ...table, segments: [table.segments[0], table.segments[1], { ...table.segments[2], blocks: 1 }] }, expect0)).toMatch(/segment 2 lists 1 blocks, expected 2/)
  })

  it('the table schema refuses a segment over the object limit or more blocks than a segment holds', () => {
    const base = { image: 'desk', version: 'v1', manifestCid: 'bafyr4iabc', segmentBlocks: 4 }
    expect(() => SegmentTable.parse({ ...base, segments: [{ cid: 'bafkr4iaaa1', bytes: MAX_SEGMENT_BYTES + 1, blocks: 4 }] })).toThrow(/bytes/)
    expect(() => SegmentTable.parse({ ...base, segments: [{ cid: 'bafkr4iaaa1', bytes: 10, blocks: SEGMENT_BLOCKS + 1 }] })).toThrow(/blocks/)
  })
})
