/** The report's SVG charts, built from a BranchReport. Pure: returns file names and SVG text. */
import type { BranchReport } from './report.ts'
import { METHODS } from './flags.ts'
import { dotChart, lineChart, stackedBarChart } from './svg.ts'

/** Charts of a report: file name -> SVG text, in the order report.md shows them. */
export function buildCharts (report: BranchReport, wanRate: number): Map<string, string> {
  const charts = new Map<string, string>()
  const ran = report.results.filter(r => r.ran)
  charts.set('bytes-by-source.svg', stackedBarChart({
    title: 'Bytes by source per method (all clients together)',
    unit: 'MB',
    scale: 1e6,
    segments: ['WAN (link counters)', 'LAN (between clients)', 'local disk (trimswarm report)'],
    rows: ran.map(r => ({ label: `${r.scenario} / ${r.method}`, values: [r.wanDown + r.wanUp, r.lan, r.local ?? 0] }))
  }))
  charts.set('completion-times.svg', dotChart({
    title: 'Completion time per client',
    unit: 'seconds',
    seriesNames: [...METHODS],
    rows: ran.map(r => ({
      label: `${r.scenario} / ${r.method}`,
      values: r.clients.filter(c => c.ok).map(c => c.seconds),
      series: METHODS.indexOf(r.method)
    }))
  }))
  for (const scenario of report.config.scenarios) {
    const rs = ran.filter(r => r.scenario === scenario && r.throughput.length > 0)
    if (rs.length === 0) continue
    charts.set(`wan-throughput-${scenario}.svg`, lineChart({
      title: `WAN throughput over time, ${scenario} (both directions, link counters)`,
      yLabel: 'Mbit/s',
      yScale: 1e6,
      limit: wanRate * 8,
      series: rs.map(r => ({ label: r.method, points: r.throughput }))
    }))
  }
  return charts
}
