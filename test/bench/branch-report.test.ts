import { describe, expect, it } from 'vitest'
import { accountingCheck, formatBytes, mdCell, renderJson, renderMarkdown, resultTable, wanSavedPercent } from '../../bench/branch/report.ts'
import type { BranchReport, MethodResult } from '../../bench/branch/report.ts'
import { HEADER_BYTES_PER_PACKET } from '../../bench/branch/counters.ts'

function result (over: Partial<MethodResult>): MethodResult {
  return {
    scenario: 'cold',
    method: 'http',
    ran: true,
    clients: [{ client: 1, seconds: 10, ok: true, verified: true }, { client: 2, seconds: 12, ok: true, verified: true }],
    wanDown: 100_000_000,
    wanUp: 1_000_000,
    wanDownPackets: 0,
    wanUpPackets: 0,
    lan: 0,
    local: null,
    firstDoneSeconds: 10,
    allDoneSeconds: 12,
    throughput: [],
    ...over
  }
}

const http = result({})
const ts = result({
  method: 'trimswarm',
  wanDown: 20_000_000 + 10_000 * HEADER_BYTES_PER_PACKET,
  wanDownPackets: 10_000,
  wanUp: 1_000_000,
  lan: 30_000_000,
  local: 5_000_000,
  clients: [
    { client: 1, seconds: 5, ok: true, verified: true, reported: { local: 2_500_000, peers: 15_000_000, origin: 10_400_000 } },
    { client: 2, seconds: 6, ok: true, verified: false, reported: { local: 2_500_000, peers: 15_000_000, origin: 10_400_000 } }
  ]
})
const casync = result({ method: 'casync', ran: false, note: 'casync not installed', clients: [] })

describe('branch report', () => {
  it('WAN saved is measured against the plain HTTP download of the same scenario', () => {
    expect(wanSavedPercent(ts, [http, ts])).toBeCloseTo((1 - (21_000_000 + 660_000) / 101_000_000) * 100)
    expect(wanSavedPercent(http, [http, ts])).toBe(0)
    expect(wanSavedPercent(ts, [ts])).toBeNull()
    expect(wanSavedPercent(result({ scenario: 'update', method: 'trimswarm' }), [http])).toBeNull()
  })

  it('accounting check compares reported origin bytes with the link payload (headers removed)', () => {
    const a = accountingCheck(ts)
    expect(a).not.toBeNull()
    expect(a?.reported).toBe(20_800_000)
    expect(a?.linkPayload).toBe(20_000_000)
    expect(a?.difference).toBeCloseTo(0.04)
    expect(a?.ok).toBe(true)
    expect(accountingCheck({ ...ts, wanDown: 18_000_000, wanDownPackets: 0 })?.ok).toBe(false)
    expect(accountingCheck(http)).toBeNull()
  })

  it('table: one row per scenario x method, not-run rows say why, pipes escaped', () => {
    const table = resultTable([http, casync, ts])
    const lines = table.split('\n')
    expect(lines).toHaveLength(5)
    expect(lines[0]).toContain('WAN bytes')
    expect(lines[2]).toBe('| cold | http | 101.0 MB | 0 B | n/a | 10.0 s | 12.0 s | 0.0 % | 2/2 |')
    expect(lines[3]).toContain('not run')
    expect(lines[3]).toContain('casync not installed')
    expect(lines[4]).toContain('| 1/2 |')
    expect(lines[4]).toContain('30.0 MB')
    expect(mdCell('a|b\nc')).toBe('a\\|b c')
  })

  it('markdown report names failures and the accounting; JSON carries derived figures', () => {
    const report: BranchReport = {
      date: '2026-11-25T00:00:00.000Z',
      machine: 'test | box',
      mode: 'netns',
      config: { agents: 2, wan: '100mbit', wanRttMs: 20, lan: '0', images: '/x', scenarios: ['cold'] },
      notes: ['a note'],
      results: [http, casync, ts]
    }
    const md = renderMarkdown(report, ['bytes-by-source.svg'])
    expect(md).toContain('test \\| box')
    expect(md).toContain('cold/trimswarm client 2: output does not verify')
    expect(md).toContain('![bytes-by-source.svg](bytes-by-source.svg)')
    expect(md).toMatch(/\| cold \| 20\.8 MB \| 20\.7 MB \| 20\.0 MB \| 4\.0 % \| 0\.7 % \| yes \|/)
    const json = JSON.parse(renderJson(report)) as { results: Array<{ wan: number, wanSavedPercent: number | null, accounting: unknown }> }
    expect(json.results[0].wan).toBe(101_000_000)
    expect(json.results[2].wanSavedPercent).toBeGreaterThan(70)
    expect(json.results[2].accounting).toMatchObject({ ok: true })
  })

  it('a BitTorrent row: WAN saved against HTTP, its LAN bytes, no accounting check (it reports nothing itself)', () => {
    const bt = result({ method: 'bittorrent', wanDown: 50_000_000, wanUp: 500_000, lan: 150_000_000, firstDoneSeconds: 6, allDoneSeconds: 8 })
    const lines = resultTable([http, bt, ts]).split('\n')
    expect(lines[3]).toBe('| cold | bittorrent | 50.5 MB | 150.0 MB | n/a | 6.0 s | 8.0 s | 50.0 % | 2/2 |')
    expect(accountingCheck(bt)).toBeNull()
    const json = JSON.parse(renderJson({ date: 'd', machine: 'm', mode: 'netns', notes: [], config: { agents: 2, wan: '100mbit', wanRttMs: 0, lan: '0', images: '/x', scenarios: ['cold'] }, results: [http, bt] })) as { results: Array<{ method: string, wan: number, wanSavedPercent: number }> }
    expect(json.results[1]).toMatchObject({ method: 'bittorrent', wan: 50_500_000, wanSavedPercent: 50 })
  })

  it('formats bytes in decimal units', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(1500)).toBe('1.5 kB')
    expect(formatBytes(48_000_000)).toBe('48.0 MB')
    expect(formatBytes(2_500_000_000)).toBe('2.50 GB')
    expect(formatBytes(null)).toBe('n/a')
  })
})
