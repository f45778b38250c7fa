/**
 * Charts as inline SVG, drawn on the server from data (no chart library):
 * stacked bars (bytes by source per time bucket) and lines (clients per
 * version). Every text is XML-escaped here; the output is inserted as is.
 */
import { escapeHtml as escapeXml, formatBytes } from './format.ts'

/** One series of a chart. */
export interface ChartSeries {
  name: string
  values: number[]
  color?: string
  /** Drawn dashed (totals next to the per-version lines). */
  dashed?: boolean
}

/** What a chart shows. */
export interface ChartSpec {
  title: string
  kind: 'bars' | 'lines'
  /** Bucket end times, ms since the epoch, one per value. */
  times: number[]
  series: ChartSeries[]
  /** How a y value reads: bytes or a plain count. */
  unit: 'bytes' | 'count'
  /** Extra text under the title (e.g. "WAN saved 83.1 %"). */
  note?: string
}

/** Colours of the series, in order (chosen to stay apart for common colour blindness). */
export const PALETTE = ['#2b8a3e', '#1c7ed6', '#e8590c', '#862e9c', '#c2255c', '#0b7285', '#5c940d', '#364fc7']

const W = 760
const H = 260
const PAD = { left: 70, right: 12, top: 40, bottom: 44 }


function niceMax (v: number, unit: ChartSpec['unit']): number {
  if (unit === 'count') {
    // whole numbers on every one of the 4 grid lines
    if (v <= 4) return 4
    const p = 10 ** Math.floor(Math.log10(v / 4))
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= 4 * m * p && Number.isInteger(m * p)) return 4 * m * p
    return 40 * p
  }
  if (v <= 0) return 1024
  // bytes: nice steps in the unit the labels use (KiB, MiB, ...)
  const scale = 1024 ** Math.max(0, Math.floor(Math.log(v) / Math.log(1024)))
  const x = v / scale
  const p = 10 ** Math.floor(Math.log10(x))
  for (const m of [1, 2, 4, 8, 10]) if (x <= m * p) return m * p * scale
  return 10 * p * scale
}

function yLabel (v: number, unit: ChartSpec['unit']): string {
  return unit === 'bytes' ? formatBytes(v) : Number.isInteger(v) ? String(v) : v.toFixed(1)
}

function timeLabel (t: number, spanMs: number): string {
  const iso = new Date(t).toISOString()
  return spanMs > 2 * 86_400_000 ? iso.slice(5, 10) + ' ' + iso.slice(11, 16) : iso.slice(11, 16)
}

/** Renders a chart to an SVG element (a string safe to insert in HTML). */
export function renderChart (spec: ChartSpec): string {
  const n = spec.times.length
  const plotW = W - PAD.left - PAD.right
  const plotH = H - PAD.top - PAD.bottom
  const colors = spec.series.map((s, i) => s.color ?? PALETTE[i % PALETTE.length])
  let max = 0
  for (let i = 0; i < n; i++) {
    if (spec.kind === 'bars') max = Math.max(max, spec.series.reduce((a, s) => a + (s.values[i] ?? 0), 0))
    else for (const s of spec.series) max = Math.max(max, s.values[i] ?? 0)
  }
  max = niceMax(max, spec.unit)
  const x = (i: number): number => PAD.left + (n <= 1 ? 0 : i * plotW / (n - 1))
  const y = (v: number): number => PAD.top + plotH - v / max * plotH
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeXml(spec.title)}">`)
  out.push(`<text x="${PAD.left}" y="16" class="chart-title">${escapeXml(spec.title)}</text>`)
  if (spec.note != null) out.push(`<text x="${PAD.left}" y="32" class="chart-note">${escapeXml(spec.note)}</text>`)
  for (let k = 0; k <= 4; k++) {
    const v = max * k / 4
    out.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="grid"/>`)
    out.push(`<text x="${PAD.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" class="axis">${escapeXml(yLabel(v, spec.unit))}</text>`)
  }
  const span = n > 1 ? spec.times[n - 1] - spec.times[0] : 0
  for (const i of n > 1 ? [0, Math.floor((n - 1) / 2), n - 1] : []) {
    const anchor = i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle'
    const label = escapeXml(timeLabel(spec.times[i], span))
    out.push(`<text x="${x(i).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="${anchor}" class="axis">${label} UTC</text>`)
  }
  if (spec.kind === 'bars') {
    const bw = Math.max(1, plotW / Math.max(n, 1) * 0.8)
    for (let i = 0; i < n; i++) {
      let base = 0
      for (const [si, s] of spec.series.entries()) {
        const v = s.values[i] ?? 0
        if (v <= 0) continue
        const y0 = y(base)
        const y1 = y(base + v)
        const box = `x="${(x(i) - bw / 2).toFixed(1)}" y="${y1.toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(0.5, y0 - y1).toFixed(1)}"`
        out.push(`<rect ${box} fill="${colors[si]}"><title>${escapeXml(`${s.name}: ${yLabel(v, spec.unit)}`)}</title></rect>`)
        base += v
      }
    }
  } else {
    for (const [si, s] of spec.series.entries()) {
      // steps: a count holds until the next sample; earlier series drawn wider so an equal later one does not hide them
      const at = (i: number, v: number): string => `${x(i).toFixed(1)},${y(v).toFixed(1)}`
      const pts = s.values.map((v, i) => i === 0 ? at(i, v) : `${at(i, s.values[i - 1])} ${at(i, v)}`).join(' ')
      const width = Math.max(2, 6 - si * 1.5)
      const dash = s.dashed === true ? ' stroke-dasharray="6 4"' : ''
      const line = `points="${pts}" fill="none" stroke="${colors[si]}" stroke-width="${width}"${dash} stroke-linejoin="round"`
      out.push(`<polyline ${line}><title>${escapeXml(s.name)}</title></polyline>`)
    }
  }
  // legend
  let lx = PAD.left
  for (const [si, s] of spec.series.entries()) {
    const label = s.name.length > 40 ? s.name.slice(0, 39) + '…' : s.name
    out.push(`<rect x="${lx}" y="${H - 16}" width="10" height="10" fill="${colors[si]}"/>`)
    out.push(`<text x="${lx + 14}" y="${H - 7}" class="legend">${escapeXml(label)}</text>`)
    lx += 24 + label.length * 7
  }
  if (spec.series.every(s => s.values.every(v => v === 0))) {
    out.push(`<text x="${W / 2}" y="${PAD.top + plotH / 2}" text-anchor="middle" class="empty">no data in this window yet</text>`)
  }
  out.push('</svg>')
  return out.join('')
}
