import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { PALETTE, dotChart, escapeXml, lineChart, niceMax, stackedBarChart } from '../../bench/branch/svg.ts'
import { buildCharts } from '../../bench/branch/charts.ts'
import type { BranchReport } from '../../bench/branch/report.ts'

const EVIL = '<script>alert("x")</script> & \'q\''

/** Well-formed XML, checked by a real XML parser (Python's expat), not by regexes. */
function parsesAsXml (svg: string): boolean {
  execFileSync('python3', ['-c', 'import sys, xml.dom.minidom; xml.dom.minidom.parseString(sys.stdin.buffer.read())'], { input: svg })
  return true
}

describe('branch SVG charts', () => {
  it('escapes every XML metacharacter', () => {
    expect(escapeXml(EVIL)).toBe('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &apos;q&apos;')
  })

  it('nice axis maxima', () => {
    expect(niceMax(0)).toBe(1)
    expect(niceMax(0.7)).toBeCloseTo(0.8)
    expect(niceMax(3)).toBe(3)
    expect(niceMax(103)).toBe(120) // a 100 Mbit/s link with headers does not halve the plot
    expect(niceMax(100)).toBe(100)
    expect(niceMax(2.2e6)).toBe(2.4e6)
    expect(niceMax(9.5)).toBe(10)
  })

  it('bar, dot and line charts are well-formed with hostile labels and scale to the data', () => {
    const bars = stackedBarChart({ title: EVIL, unit: 'MB', scale: 1e6, segments: ['WAN', EVIL], rows: [{ label: EVIL, values: [50e6, 25e6] }, { label: 'b', values: [100e6, 0] }] })
    expect(bars).not.toContain('<script>')
    expect(parsesAsXml(bars)).toBe(true)
    // 100 MB is the axis maximum, so the longest bar spans the whole plot width (820 - 170 - 40).
    expect(bars).toContain('width="610.0"')
    const dots = dotChart({ title: 't', unit: 's', seriesNames: ['http'], rows: [{ label: EVIL, values: [1, 2, 4], series: 0 }] })
    expect(parsesAsXml(dots)).toBe(true)
    expect(dots.match(/<circle /g)).toHaveLength(3)
    const lines = lineChart({ title: 't', yLabel: 'Mbit/s', yScale: 1e6, limit: 100e6, series: [{ label: EVIL, points: [{ t: 1, bps: 50e6 }, { t: 2, bps: 100e6 }] }, { label: 'empty', points: [] }] })
    expect(parsesAsXml(lines)).toBe(true)
    expect(lines.match(/<path /g)).toHaveLength(1)
  })

  it('a report gives the three kinds of chart, one throughput chart per scenario', () => {
    const r = (scenario: string, method: 'http' | 'trimswarm') => ({
      scenario, method, ran: true, clients: [{ client: 1, seconds: 3, ok: true, verified: true }], wanDown: 1e6, wanUp: 1e4,
      wanDownPackets: 0, wanUpPackets: 0, lan: 0, local: null, firstDoneSeconds: 3, allDoneSeconds: 3, throughput: [{ t: 0.25, bps: 8e6 }]
    })
    const report: BranchReport = {
      date: 'd', machine: 'm', mode: 'netns', notes: [],
      config: { agents: 1, wan: '100mbit', wanRttMs: 0, lan: '0', images: '/x', scenarios: ['cold', 'update'] },
      results: [r('cold', 'http'), r('cold', 'trimswarm'), r('update', 'trimswarm')]
    }
    const charts = buildCharts(report, 12_500_000)
    expect([...charts.keys()]).toEqual(['bytes-by-source.svg', 'completion-times.svg', 'wan-throughput-cold.svg', 'wan-throughput-update.svg'])
    for (const svg of charts.values()) expect(parsesAsXml(svg)).toBe(true)
  })

  it('BitTorrent rows appear in every chart, with their own series colour', () => {
    const r = (method: 'http' | 'bittorrent' | 'trimswarm', seconds: number) => ({
      scenario: 'cold', method, ran: true, clients: [{ client: 1, seconds, ok: true, verified: true }], wanDown: 1e6, wanUp: 1e4,
      wanDownPackets: 0, wanUpPackets: 0, lan: 5e6, local: null, firstDoneSeconds: seconds, allDoneSeconds: seconds, throughput: [{ t: 0.25, bps: 8e6 }]
    })
    const report: BranchReport = {
      date: 'd', machine: 'm', mode: 'netns', notes: [],
      config: { agents: 1, wan: '100mbit', wanRttMs: 0, lan: '0', images: '/x', scenarios: ['cold'] },
      results: [r('http', 3), r('bittorrent', 5), r('trimswarm', 7)]
    }
    const charts = buildCharts(report, 12_500_000)
    expect(charts.get('bytes-by-source.svg')).toContain('cold / bittorrent')
    const dots = charts.get('completion-times.svg') ?? ''
    expect(dots).toContain('>bittorrent<')
    // Each method its own colour: http, casync, bittorrent, trimswarm in METHODS order.
    expect(dots).toContain(PALETTE[2])
    expect(dots).toContain(PALETTE[3])
    expect(charts.get('wan-throughput-cold.svg')).toContain('>bittorrent<')
  })
})
