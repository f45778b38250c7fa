/** The console's event index over a real event store in a real level db: filters and paging against a brute-force answer, the settle rule, retention. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { EVENT_TYPES, type AgentEvent } from '../../../protocol/api.ts'
import type { StoredEvent } from '../../../protocol/api-admin.ts'
import { createEventIndex, type EventFilter, type EventIndex } from '../../../coordinator/console/event-index.ts'
import { createEventStore, type EventStore } from '../../../coordinator/event-store.ts'
import { openMetaDb, type MetaDb } from '../../../coordinator/meta-db.ts'
import { createPrng } from '../../helpers/images.ts'

let dir: string
let db: MetaDb
let clock: number
let store: EventStore

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trimswarm-event-index-'))
  db = await openMetaDb(dir)
  clock = Date.UTC(2026, 10, 25, 12)
  store = createEventStore({ db }, { now: () => clock })
  await store.start()
})
afterEach(async () => {
  await store.stop()
  await db.close()
  await rm(dir, { recursive: true, force: true })
})

function ev (id: string, over: Partial<AgentEvent> = {}): AgentEvent {
  return { id, type: 'sync.progress', time: new Date(clock).toISOString(), agent: 'a', site: 's1', image: 'img1', version: 'v1', ...over }
}

async function all (index: EventIndex, filter: EventFilter, limit: number): Promise<StoredEvent[]> {
  const out: StoredEvent[] = []
  let before: string | undefined
  for (let i = 0; i < 1000; i++) {
    const page = await index.query(filter, { limit, before })
    out.push(...page.events)
    if (page.next == null) return out
    before = page.next
  }
  throw new Error('paging did not end')
}

describe('event index', () => {
  it('answers every filter like a scan of the whole log, page after page', async () => {
    const prng = createPrng(5)
    const pick = <T>(xs: readonly T[]): T => xs[prng.int(0, xs.length - 1)]
    let n = 0
    for (let b = 0; b < 12; b++) {
      clock += prng.int(1, 3) // batches can share a millisecond
      const batch: AgentEvent[] = []
      for (let i = 0; i < 50; i++) batch.push(ev(`e-${String(n++).padStart(6, '0')}-${prng.int(0, 999_999)}`, { image: pick(['img1', 'img2', 'img3']), site: pick(['s1', 's2']), type: pick(EVENT_TYPES) }))
      await store.add(batch, 'test')
    }
    const index = createEventIndex({ db }, { settleMs: 0, now: () => clock + 1 })
    expect(await index.refresh(100_000)).toBe(600)
    const log = (await store.query({ limit: 1000 })).events
    expect(log).toHaveLength(600)
    const filters: EventFilter[] = [{}, { image: 'img2' }, { site: 's1' }, { type: 'sync.failed' }, { image: 'img3', type: 'sync.completed' }, { image: 'img1', site: 's2' }, { image: 'img2', site: 's1', type: 'peer.banned' }, { image: 'nope' }]
    for (const f of filters) {
      const expected = log.filter(s => (f.image == null || s.event.image === f.image) && (f.site == null || s.event.site === f.site) && (f.type == null || s.event.type === f.type))
      for (const limit of [1, 7, 1000]) {
        const got = await all(index, f, limit)
        expect(got.map(s => s.event.id), JSON.stringify(f) + ` limit ${limit}`).toEqual(expected.map(s => s.event.id))
      }
    }
  })

  it('leaves events younger than the settle time for a later pass, so a batch stamped earlier is not skipped', async () => {
    let indexNow = clock
    const index = createEventIndex({ db }, { settleMs: 50, now: () => indexNow })
    await store.add([ev('zz-late-id', { type: 'sync.failed' })], 'test')
    indexNow = clock + 10
    expect(await index.refresh()).toBe(0)
    // a second batch with the same arrival millisecond and a smaller key
    await store.add([ev('aa-early-id', { type: 'sync.failed' })], 'test')
    indexNow = clock + 100
    expect(await index.refresh()).toBe(2)
    expect((await index.query({ type: 'sync.failed' }, { limit: 10 })).events.map(s => s.event.id).sort()).toEqual(['aa-early-id', 'zz-late-id'])
    // and nothing twice
    expect(await index.refresh()).toBe(0)
  })

  it('skips and drops entries of events removed by retention, and keeps its place across a restart', async () => {
    await store.add([ev('old-1', { image: 'img9' }), ev('old-2', { image: 'img9' })], 'test')
    clock += 60_000
    await store.add([ev('new-1', { image: 'img9' })], 'test')
    const index = createEventIndex({ db }, { settleMs: 0, now: () => clock + 1 })
    await index.refresh()
    expect(await store.sweep(new Date(clock - 1000))).toBe(2)
    expect((await index.query({ image: 'img9' }, { limit: 10 })).events.map(s => s.event.id)).toEqual(['new-1'])
    const keys: string[] = []
    for await (const k of db.sublevel('console-event-index').keys()) keys.push(k)
    // the entries read (image index) are dropped; the others go when a query reads them
    expect(keys.filter(k => k.startsWith('i\x00') && k.includes('old-'))).toEqual([])
    expect((await index.query({ site: 's1' }, { limit: 10 })).events.map(s => s.event.id)).toEqual(['new-1'])
    const again = createEventIndex({ db }, { settleMs: 0, now: () => clock + 1 })
    await again.start()
    await again.stop()
    expect(again.watermark()).toBe(index.watermark())
    expect(await again.refresh()).toBe(0)
  })
})
