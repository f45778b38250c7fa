/**
 * Hand-written SVG charts for the branch report (no dependency): stacked
 * bars of bytes by source, per-client completion times, WAN throughput over
 * time. Pure: data in, SVG text out; every text is XML-escaped.
 */
import type { RatePoint } from './counters.ts'

/** Escapes text for XML content and attribute values. */
export function escapeXml (text: string): string {
  return text.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string)
}

/** Axis maxima per decade: each divides into 4 round ticks, and steps stay small so a line at the link rate does not squeeze the plot. */
const NICE_STEPS = [1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10]

/** A round axis maximum >= v (see NICE_STEPS, x 10^k). */
export function niceMax (v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of NICE_STEPS) if (m * p >= v * (1 - 1e-12)) return m * p
  return 10 * p
}

/** Colours per series (colour-blind safe Okabe-Ito). */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000']

const FONT = 'font-family="sans-serif" font-size="12"'

function fmt (n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/0+$/, '').replace(/\.$/, '')
}

function svgOpen (width: number, height: number, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-family="sans-serif" font-size="15" font-weight="bold">${escapeXml(title)}</text>`
  ]
}

function legend (x: number, y: number, items: Array<{ label: string, color: string, dash?: string }>): string[] {
  const out: string[] = []
  let cx = x
  for (const it of items) {
    out.push(`<rect x="${cx}" y="${y - 9}" width="12" height="10" fill="${it.color}"/>`)
    out.push(`<text x="${cx + 16}" y="${y}" ${FONT}>${escapeXml(it.label)}</text>`)
    cx += 26 + it.label.length * 7
  }
  return out
}

/** One horizontal stacked bar: a label and values per segment. */
export interface StackedRow {
  label: string
  values: number[]
}

/** The frame of a chart with one row per label and a value axis along x: layout, grid, ticks and unit. */
function rowChartFrame (title: string, unit: string, rows: number, largest: number): { out: string[], left: number, plotW: number, rowH: number, top: number, height: number, max: number } {
  const left = 170
  const right = 40
  const rowH = 24
  const top = 50
  const width = 820
  const plotW = width - left - right
  const height = top + rows * rowH + 60
  const max = niceMax(largest)
  const out = svgOpen(width, height, title)
  for (let i = 0; i <= 4; i++) {
    const x = left + plotW * i / 4
    out.push(`<line x1="${x}" y1="${top - 5}" x2="${x}" y2="${top + rows * rowH}" stroke="#dddddd"/>`)
    out.push(`<text x="${x}" y="${top + rows * rowH + 16}" text-anchor="middle" ${FONT}>${fmt(max * i / 4)}</text>`)
  }
  out.push(`<text x="${left + plotW / 2}" y="${top + rows * rowH + 34}" text-anchor="middle" ${FONT}>${escapeXml(unit)}</text>`)
  return { out, left, plotW, rowH, top, height, max }
}

/** Horizontal stacked bar chart (e.g. bytes by source per scenario x method). */
export function stackedBarChart (opts: { title: string, unit: string, scale: number, segments: string[], rows: StackedRow[] }): string {
  const { out, left, plotW, rowH, top, height, max } = rowChartFrame(opts.title, opts.unit, opts.rows.length, Math.max(0, ...opts.rows.map(r => r.values.reduce((s, v) => s + v, 0))) / opts.scale)
  opts.rows.forEach((row, i) => {
    const y = top + i * rowH
    out.push(`<text x="${left - 8}" y="${y + rowH / 2 + 4}" text-anchor="end" ${FONT}>${escapeXml(row.label)}</text>`)
    let x = left
    row.values.forEach((v, j) => {
      const w = Math.max(0, v / opts.scale / max * plotW)
      if (w > 0) {
        out.push(`<rect x="${x.toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${PALETTE[j % PALETTE.length]}"><title>${escapeXml(`${row.label}: ${opts.segments[j]} ${fmt(v / opts.scale)} ${opts.unit}`)}</title></rect>`)
      }
      x += w
    })
  })
  out.push(...legend(left, height - 10, opts.segments.map((s, j) => ({ label: s, color: PALETTE[j % PALETTE.length] }))))
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** One row of dots: a label and one value per client. */
export interface DotRow {
  label: string
  values: number[]
  /** Series index for the colour. */
  series: number
}

/** Dot chart: per row, one dot per client at its completion time. */
export function dotChart (opts: { title: string, unit: string, rows: DotRow[], seriesNames: string[] }): string {
  const { out, left, plotW, rowH, top, height, max } = rowChartFrame(opts.title, opts.unit, opts.rows.length, Math.max(0, ...opts.rows.flatMap(r => r.values)))
  opts.rows.forEach((row, i) => {
    const y = top + i * rowH + rowH / 2
    const color = PALETTE[row.series % PALETTE.length]
    out.push(`<text x="${left - 8}" y="${y + 4}" text-anchor="end" ${FONT}>${escapeXml(row.label)}</text>`)
    out.push(`<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#f0f0f0"/>`)
    row.values.forEach((v, k) => {
      const x = left + v / max * plotW
      out.push(`<circle cx="${x.toFixed(1)}" cy="${y}" r="5" fill="${color}" fill-opacity="0.75"><title>${escapeXml(`${row.label}, client ${k + 1}: ${fmt(v)} ${opts.unit}`)}</title></circle>`)
    })
  })
  out.push(...legend(left, height - 10, opts.seriesNames.map((s, j) => ({ label: s, color: PALETTE[j % PALETTE.length] }))))
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** One line of a line chart. */
export interface LineSeries {
  label: string
  points: RatePoint[]
}

/** Line chart of throughput over time (x: seconds, y: Mbit/s), one line per series. */
export function lineChart (opts: { title: string, series: LineSeries[], yLabel: string, yScale: number, limit?: number }): string {
  const left = 70
  const right = 30
  const top = 40
  const width = 820
  const plotH = 300
  const plotW = width - left - right
  const height = top + plotH + 70
  const maxT = niceMax(Math.max(0, ...opts.series.flatMap(s => s.points.map(p => p.t))))
  const maxY = niceMax(Math.max(opts.limit ?? 0, ...opts.series.flatMap(s => s.points.map(p => p.bps))) / opts.yScale)
  const px = (t: number): number => left + t / maxT * plotW
  const py = (v: number): number => top + plotH - v / opts.yScale / maxY * plotH
  const out = svgOpen(width, height, opts.title)
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH * i / 4
    out.push(`<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#dddddd"/>`)
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end" ${FONT}>${fmt(maxY * (4 - i) / 4)}</text>`)
    const x = left + plotW * i / 4
    out.push(`<text x="${x}" y="${top + plotH + 16}" text-anchor="middle" ${FONT}>${fmt(maxT * i / 4)}</text>`)
  }
  out.push(`<text x="${left + plotW / 2}" y="${top + plotH + 34}" text-anchor="middle" ${FONT}>seconds since the method started</text>`)
  out.push(`<text x="16" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 16 ${top + plotH / 2})" ${FONT}>${escapeXml(opts.yLabel)}</text>`)
  if (opts.limit != null && opts.limit > 0) {
    out.push(`<line x1="${left}" y1="${py(opts.limit).toFixed(1)}" x2="${left + plotW}" y2="${py(opts.limit).toFixed(1)}" stroke="#999999" stroke-dasharray="6 4"><title>link rate</title></line>`)
  }
  opts.series.forEach((s, j) => {
    if (s.points.length === 0) return
    const d = [{ t: 0, bps: 0 }, ...s.points].map((p, k) => `${k === 0 ? 'M' : 'L'}${px(p.t).toFixed(1)},${py(p.bps).toFixed(1)}`).join(' ')
    out.push(`<path d="${d}" fill="none" stroke="${PALETTE[j % PALETTE.length]}" stroke-width="2"><title>${escapeXml(s.label)}</title></path>`)
  })
  out.push(...legend(left, height - 10, opts.series.map((s, j) => ({ label: s.label, color: PALETTE[j % PALETTE.length] }))))
  out.push('</svg>')
  return out.join('\n') + '\n'
}
