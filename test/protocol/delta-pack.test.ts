import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  countRangeBlocks, decodeDeltaPackHeader, deltaPackHeaderLength, encodeDeltaPackHeader, indicesOfRanges, rangesFromIndices
} from '../../protocol/delta-pack.ts'
import { InvalidManifestError } from '../../protocol/errors.ts'

describe('delta pack header', () => {
  it('encodes the documented bytes (docs/PROTOCOL.md example)', () => {
    const bytes = encodeDeltaPackHeader({ name: 'desk', version: 'v2', from: 'v1', ranges: [[0, 3], [5, 1], [9, 2]], blocks: 6 })
    expect(Buffer.from(bytes).toString('hex')).toBe('545357445041434b1401046465736b0276320276310603000302010302')
  })

  it('round-trips any ascending index set, with a body after it', () => {
    fc.assert(fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 1_000_000 }), { maxLength: 500 }), (idx) => {
      idx.sort((a, b) => a - b)
      const ranges = rangesFromIndices(idx)
      expect([...indicesOfRanges(ranges)]).toEqual(idx)
      const head = encodeDeltaPackHeader({ name: 'img', version: '2', from: '1', ranges, blocks: countRangeBlocks(ranges) })
      const file = new Uint8Array(head.length + 5)
      file.set(head)
      expect(deltaPackHeaderLength(file.subarray(0, 12))).toBe(head.length)
      const { header, bodyOffset } = decodeDeltaPackHeader(file)
      expect(bodyOffset).toBe(head.length)
      expect(header.ranges).toEqual(ranges)
      expect(header.blocks).toBe(idx.length)
    }))
  })

  it('says when the prefix is too short, and rejects garbage', () => {
    const head = encodeDeltaPackHeader({ name: 'img', version: '2', from: '1', ranges: [[3, 4]], blocks: 4 })
    expect(deltaPackHeaderLength(head.subarray(0, 5))).toBeUndefined()
    expect(() => decodeDeltaPackHeader(head.subarray(0, head.length - 1))).toThrow(InvalidManifestError)
    const bad = head.slice()
    bad[0] = 0
    expect(() => decodeDeltaPackHeader(bad)).toThrow(/magic/)
    expect(() => encodeDeltaPackHeader({ name: 'img', version: '2', from: '1', ranges: [[3, 4]], blocks: 5 })).toThrow(InvalidManifestError)
    expect(() => encodeDeltaPackHeader({ name: '../x', version: '2', from: '1', ranges: [], blocks: 0 })).toThrow(InvalidManifestError)
    expect(() => encodeDeltaPackHeader({ name: 'img', version: '2', from: '1', ranges: [[0, 2], [2, 1]], blocks: 3 })).toThrow(/touches/)
  })
})
