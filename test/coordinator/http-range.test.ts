import { describe, expect, it } from 'vitest'
import { parseRangeHeader } from '../../coordinator/http-range.ts'

describe('parseRangeHeader', () => {
  it('honours one bytes range, clipped to the file', () => {
    expect(parseRangeHeader('bytes=0-99', 1000)).toEqual({ start: 0, end: 99 })
    expect(parseRangeHeader('bytes=900-', 1000)).toEqual({ start: 900, end: 999 })
    expect(parseRangeHeader('bytes=900-5000', 1000)).toEqual({ start: 900, end: 999 })
    expect(parseRangeHeader('bytes=-100', 1000)).toEqual({ start: 900, end: 999 })
    expect(parseRangeHeader('bytes=-5000', 1000)).toEqual({ start: 0, end: 999 })
    expect(parseRangeHeader(' Bytes = 10 - 20 ', 1000)).toEqual({ start: 10, end: 20 })
  })

  it('says unsatisfiable for a start at or past the end, or an empty suffix', () => {
    expect(parseRangeHeader('bytes=1000-', 1000)).toBe('unsatisfiable')
    expect(parseRangeHeader('bytes=5000-6000', 1000)).toBe('unsatisfiable')
    expect(parseRangeHeader('bytes=-0', 1000)).toBe('unsatisfiable')
  })

  it('ignores what a server may ignore: none, other units, several ranges, bad syntax, reversed', () => {
    for (const h of [undefined, 'items=0-1', 'bytes=0-1,5-9', 'bytes=a-b', 'bytes=-', 'bytes=50-10']) {
      expect(parseRangeHeader(h, 1000)).toBeUndefined()
    }
  })
})
