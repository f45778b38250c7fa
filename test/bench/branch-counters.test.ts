import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { HEADER_BYTES_PER_PACKET, parseNetDev, payloadBytes, relativeDifference, sampleDelta, throughputSeries } from '../../bench/branch/counters.ts'
import type { Sample } from '../../bench/branch/counters.ts'

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     789    0    0    0     0          0         0   123456     789    0    0    0     0       0          0
tsh4242: 9876543210 1234567 0 0 0 0 0 0 42 7 0 0 0 0 0 0
  eth0: 1 2 3
`

const s = (t: number, wanDown: number, wanUp: number, lan = 0, wanDownPackets = 0, wanUpPackets = 0): Sample => ({ t, wanDown, wanUp, lan, wanDownPackets, wanUpPackets })

describe('interface counters', () => {
  it('parses /proc/net/dev, including a name glued to its first number', () => {
    const m = parseNetDev(NET_DEV)
    expect(m.get('lo')).toEqual({ rx: 123456, rxPackets: 789, tx: 123456, txPackets: 789 })
    expect(m.get('tsh4242')).toEqual({ rx: 9876543210, rxPackets: 1234567, tx: 42, txPackets: 7 })
    expect(m.has('eth0')).toBe(false) // truncated line: skipped, not misread
    expect(m.has('Inter-')).toBe(false)
  })

  it('parses this machine\'s real /proc/self/net/dev', () => {
    const m = parseNetDev(readFileSync('/proc/self/net/dev', 'utf8'))
    const lo = m.get('lo')
    expect(lo).toBeDefined()
    expect(Number.isInteger(lo?.rx)).toBe(true)
    expect(lo?.rx).toBeGreaterThanOrEqual(0)
  })

  it('deltas are end - start per direction, never negative', () => {
    const d = sampleDelta(s(1000, 100, 10, 5, 3, 2), s(3000, 1100, 60, 5005, 13, 4))
    expect(d).toEqual({ wanDown: 1000, wanUp: 50, wan: 1050, lan: 5000, wanDownPackets: 10, wanUpPackets: 2, seconds: 2 })
    expect(sampleDelta(s(0, 500, 0), s(1000, 100, 0)).wanDown).toBe(0)
  })

  it('throughput series: bits per second per interval, time from the first sample', () => {
    const series = throughputSeries([s(1000, 0, 0), s(1250, 250_000, 12_500), s(1500, 250_000, 12_500), s(1500, 999, 0), s(2000, 1_250_000, 12_500)])
    expect(series).toEqual([
      { t: 0.25, bps: (262_500) * 8 / 0.25 },
      { t: 0.5, bps: 0 },
      { t: 1, bps: (1_250_000 - 999 + 12_500) * 8 / 0.5 }
    ])
    expect(throughputSeries([])).toEqual([])
    expect(throughputSeries([s(0, 1, 1)])).toEqual([])
  })

  it('payload removes the headers of every packet', () => {
    expect(payloadBytes(1500 * 10, 10)).toBe((1500 - HEADER_BYTES_PER_PACKET) * 10)
    expect(payloadBytes(10, 10)).toBe(0)
  })

  it('relative difference', () => {
    expect(relativeDifference(105, 100)).toBeCloseTo(0.05)
    expect(relativeDifference(95, 100)).toBeCloseTo(0.05)
    expect(relativeDifference(0, 0)).toBe(0)
    expect(relativeDifference(1, 0)).toBe(Infinity)
  })
})
