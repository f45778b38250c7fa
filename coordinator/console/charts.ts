/** The console's charts: bytes by source over time, and clients per version over time, from the series samples. */
import { ValidationError } from '../../protocol/errors.ts'
import { nameParam } from '../request-body.ts'
import { CHART_POINTS, CHART_WINDOWS } from './constants.ts'
import { savedPercent } from './format.ts'
import type { Bytes3, Sample, SeriesStore } from './series-store.ts'
import { renderChart, type ChartSpec } from './svg-chart.ts'

/** A chart of the console: its query parameters and how it is drawn. */
export interface ChartDef {
  id: string
  params: readonly string[]
  render: (q: Record<string, string>) => Promise<string>
}

/** Validates `?window=` (a CHART_WINDOWS name); the first one is the default. */
export function windowParam (q: Record<string, string>): { name: string, ms: number } {
  const name = q.window == null || q.window === '' ? Object.keys(CHART_WINDOWS)[0] : q.window
  const ms = CHART_WINDOWS[name]
  if (ms == null) throw new ValidationError(`window: must be one of ${Object.keys(CHART_WINDOWS).join(', ')}`)
  return { name, ms }
}

/** CHART_POINTS + 1 times ending now, and the samples at each. */
async function samples (series: SeriesStore, windowMs: number, now: number): Promise<{ times: number[], at: Array<Sample | undefined> }> {
  const times = Array.from({ length: CHART_POINTS + 1 }, (_, i) => Math.round(now - windowMs + i * windowMs / CHART_POINTS))
  return { times, at: await series.at(times) }
}

const optName = (q: Record<string, string>, k: string): string | undefined => q[k] == null || q[k] === '' ? undefined : nameParam(q[k], k)

/** Builds the charts over the series store. */
export function createCharts (components: { series: SeriesStore, now?: () => number }): Record<string, ChartDef> {
  const { series } = components
  const now = components.now ?? Date.now
  const bandwidth: ChartDef = {
    id: 'bandwidth',
    params: ['image', 'site', 'window'],
    async render (q) {
      const image = optName(q, 'image')
      const site = optName(q, 'site')
      if (image != null && site != null) throw new ValidationError('choose an image or a site, not both')
      const w = windowParam(q)
      await series.sample(1000)
      const { times, at } = await samples(series, w.ms, now())
      const pick = (s: Sample | undefined): Bytes3 => {
        if (s == null) return [0, 0, 0]
        if (image != null) return s.images[image]?.bytes ?? [0, 0, 0]
        return site != null ? s.sites[site] ?? [0, 0, 0] : s.total
      }
      const values: number[][] = [[], [], []]
      const sum = { local: 0, peers: 0, origin: 0 }
      for (let i = 1; i < times.length; i++) {
        const a = pick(at[i - 1])
        const b = pick(at[i])
        for (let k = 0; k < 3; k++) values[k].push(Math.max(0, b[k] - a[k]))
        sum.local += values[0][i - 1]; sum.peers += values[1][i - 1]; sum.origin += values[2][i - 1]
      }
      const spec: ChartSpec = {
        title: `Bytes by source, ${image != null ? `image ${image}` : site != null ? `site ${site}` : 'all images and sites'}, last ${w.name}`,
        note: `WAN saved in this window: ${savedPercent(sum).toFixed(1)} % (local + LAN peers over all bytes)`,
        kind: 'bars',
        unit: 'bytes',
        times: times.slice(1),
        series: [{ name: 'local disk', values: values[0] }, { name: 'LAN peers', values: values[1] }, { name: 'WAN origin', values: values[2] }]
      }
      return renderChart(spec)
    }
  }
  const rollout: ChartDef = {
    id: 'rollout',
    params: ['image', 'window'],
    async render (q) {
      const image = nameParam(q.image, 'image')
      const w = windowParam(q)
      await series.sample(1000)
      const { times, at } = await samples(series, w.ms, now())
      const pts = at.slice(1)
      const versions = new Set<string>()
      for (const s of pts) for (const v of Object.keys(s?.images[image]?.versions ?? {})) versions.add(v)
      const list = [...versions].sort()
      const count = (s: Sample | undefined, v: string, k: 0 | 1 | 2): number => s?.images[image]?.versions[v]?.[k] ?? 0
      const spec: ChartSpec = {
        title: `Clients on each version of ${image}, last ${w.name}`,
        note: 'clients = agents whose latest completed sync is that version',
        kind: 'lines',
        unit: 'count',
        times: times.slice(1),
        series: [
          ...list.map(v => ({ name: v, values: pts.map(s => count(s, v, 0)) })),
          { name: 'in progress', values: pts.map(s => list.reduce((a, v) => a + count(s, v, 1), 0)), color: '#868e96', dashed: true },
          { name: 'failed', values: pts.map(s => list.reduce((a, v) => a + count(s, v, 2), 0)), color: '#e03131', dashed: true }
        ]
      }
      return renderChart(spec)
    }
  }
  return { bandwidth, rollout }
}
