import { describe, expect, it } from 'vitest'
import { formatRate, parseRate } from '../../protocol/rate.ts'

describe('parseRate', () => {
  it('takes bit and byte units, case-exact', () => {
    expect(parseRate('20mbit')).toBe(2_500_000)
    expect(parseRate('20 mbit')).toBe(2_500_000)
    expect(parseRate('20mbit/s')).toBe(2_500_000)
    expect(parseRate('750kbit')).toBe(93_750)
    expect(parseRate('1gbit')).toBe(125_000_000)
    expect(parseRate('800bit')).toBe(100)
    expect(parseRate('5MB/s')).toBe(5_000_000)
    expect(parseRate('5KB/s')).toBe(5_000)
    expect(parseRate('5kB/s')).toBe(5_000)
    expect(parseRate('2GB/s')).toBe(2_000_000_000)
    expect(parseRate('10MiB/s')).toBe(10 * 1024 * 1024)
    expect(parseRate('4KiB/s')).toBe(4096)
    expect(parseRate('1GiB/s')).toBe(1024 ** 3)
    expect(parseRate('100B/s')).toBe(100)
    expect(parseRate('unlimited')).toBe(0)
    expect(parseRate('0')).toBe(0)
  })

  it('refuses a bare number with a hint naming both readings', () => {
    expect(() => parseRate('20')).toThrow(/no unit: write 20mbit for megabits or 20MB\/s for megabytes per second/)
  })

  it('refuses ambiguous or wrongly cased units with a hint', () => {
    expect(() => parseRate('20Mb')).toThrow(/unknown rate unit "Mb".*write 20mbit for megabits or 20MB\/s for megabytes per second/)
    expect(() => parseRate('20mb')).toThrow(/write 20mbit for megabits or 20MB\/s/)
    expect(() => parseRate('20MB')).toThrow(/write 20mbit for megabits or 20MB\/s/)
    expect(() => parseRate('20Mbps')).toThrow(/write 20mbit/)
    expect(() => parseRate('20mb/s')).toThrow(/unknown rate unit/)
    expect(() => parseRate('20MBIT')).toThrow(/unknown rate unit/)
    expect(() => parseRate('5kb/s')).toThrow(/write 5kbit for kilobits or 5KB\/s for kilobytes/)
    expect(() => parseRate('20 parsecs')).toThrow(/case-exact: bit, kbit, mbit, gbit, B\/s/)
    expect(() => parseRate('fast')).toThrow(/cannot parse rate "fast"/)
    expect(() => parseRate('1bit')).toThrow(/below 1 byte per second/)
    expect(() => parseRate('1e300gbit')).toThrow(/unknown rate unit/)
    expect(() => parseRate('99999999999999999999gbit')).toThrow(/too large/)
  })
})

describe('formatRate', () => {
  it('shows bits with a sensible unit and precision, never 0.000mbit', () => {
    expect(formatRate(0)).toBe('unlimited')
    expect(formatRate(2_500_000)).toBe('20 mbit')
    expect(formatRate(312_500)).toBe('2.5 mbit')
    expect(formatRate(93_750)).toBe('750 kbit')
    expect(formatRate(20)).toBe('160 bit')
    expect(formatRate(1)).toBe('8 bit')
    expect(formatRate(125_000_000)).toBe('1 gbit')
    expect(formatRate(5_000_000)).toBe('40 mbit')
    expect(formatRate(1_234_567)).toBe('9.88 mbit')
  })

  it('formats to text parseRate reads back', () => {
    for (const bps of [1, 20, 93_750, 2_500_000, 125_000_000]) expect(parseRate(formatRate(bps))).toBe(bps)
  })
})
