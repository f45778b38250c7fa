/**
 * stop() while requests are in flight: every request either completes or is
 * refused at the connection, none fails inside (500, "Database is not open"),
 * and every event batch the coordinator acknowledged is there after a restart.
 */
import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { routes, type AgentEvent } from '../../protocol/api.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { createLogger } from '../../coordinator/logger.ts'
import { tempDir } from '../helpers/images.ts'

describe('coordinator stop with requests in flight', () => {
  it('finishes or refuses each request, loses no acknowledged event', async () => {
    const dir = await tempDir()
    const lines: string[] = []
    const logger = createLogger({ level: 'warn', write: (l) => { lines.push(l) } })
    const dataDir = join(dir.path, 'c')
    try {
      let coord = createCoordinator({ dataDir, listen: '127.0.0.1:0', logger })
      await coord.start()
      const url = coord.url
      const admin = { authorization: `Bearer ${coord.adminToken}`, 'content-type': 'application/json' }
      const token = (await (await fetch(url + routes.tokens, { method: 'POST', headers: admin, body: JSON.stringify({ group: 'desk' }) })).json()).token

      const batch = (i: number): AgentEvent[] => Array.from({ length: 20 }, (_, j) => ({
        id: `b${i}-e${j}-xxxx`, type: 'sync.progress' as const, time: '2026-11-25T10:00:00.000Z', agent: `pc${i}`, site: 'paris', image: 'desk', version: 'v1'
      }))
      // stop once the first answers are back, so the rest are in every stage: queued, being read, being written
      let answers = 0
      let stopping: Promise<void> | undefined
      const outcomes: Array<Promise<{ status: number, accepted: number } | { error: string }>> = []
      for (let i = 0; i < 200; i++) {
        outcomes.push(fetch(url + routes.events, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ events: batch(i) }) })
          .then(async r => {
            if (++answers === 20) stopping = coord.stop()
            return { status: r.status, accepted: r.ok ? (await r.json()).accepted : 0 }
          }, (err: Error) => ({ error: err.message })))
      }
      const results = await Promise.all(outcomes)
      const answered = results.filter((r): r is { status: number, accepted: number } => 'status' in r)
      expect(answered.length).toBeGreaterThan(0)
      for (const r of answered) expect(r.status).toBe(200)
      await stopping
      expect(answered.length).toBeLessThan(200) // the stop really cut some off
      expect(lines.filter(l => l.includes('"level":"error"'))).toEqual([])

      coord = createCoordinator({ dataDir, serve: false, logger })
      await coord.start()
      const acknowledged = answered.reduce((n, r) => n + r.accepted, 0)
      const stored = await (await coord.app.request(`${routes.events}?limit=1000`, { headers: admin })).json()
      let count = stored.events.length
      let next = stored.next
      while (next != null) {
        const page = await (await coord.app.request(`${routes.events}?limit=1000&before=${encodeURIComponent(next)}`, { headers: admin })).json()
        count += page.events.length
        next = page.next
      }
      expect(count).toBeGreaterThanOrEqual(acknowledged)
      await coord.stop()
    } finally {
      await dir.cleanup()
    }
  })
})
