import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { AgentEvent } from '../../protocol/api.ts'
import { createEventStore, type EventStore } from '../../coordinator/event-store.ts'
import { openMetaDb, type MetaDb } from '../../coordinator/meta-db.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

let n = 0
function ev (over: Partial<AgentEvent>): AgentEvent {
  return { id: `event-${String(++n).padStart(4, '0')}`, type: 'sync.started', time: '2026-11-25T10:00:00.000Z', agent: 'pc1', site: 'paris', image: 'desk', version: 'v1', ...over }
}

describe('event store', () => {
  let dir: TempDir
  let db: MetaDb
  let store: EventStore
  let now = Date.parse('2026-11-25T12:00:00Z')
  beforeEach(async () => {
    dir = await tempDir()
    db = await openMetaDb(dir.path)
    store = createEventStore({ db }, { now: () => now })
    await store.start()
  })
  afterEach(async () => {
    await store.stop()
    await db.close()
    await dir.cleanup()
  })

  it('is idempotent by event id, within and across batches', async () => {
    const a = ev({})
    expect(await store.add([a, a], 'tok')).toMatchObject({ accepted: 1, duplicates: 1 })
    expect(await store.add([a, ev({})], 'tok')).toMatchObject({ accepted: 1, duplicates: 1 })
    expect((await store.query({ limit: 10 })).events).toHaveLength(2)
  })

  it('lists a batch newest first (by event time, not by id), and later batches above it, even within one millisecond', async () => {
    // ids in the opposite order of the times: a key by arrival time plus id would list the oldest first
    await store.add([
      ev({ id: 'zzzzzzzz-1', time: '2026-11-25T10:00:01.000Z', type: 'sync.started' }),
      ev({ id: 'mmmmmmmm-2', time: '2026-11-25T10:00:02.000Z', type: 'sync.progress' }),
      ev({ id: 'aaaaaaaa-3', time: '2026-11-25T10:00:03.000Z', type: 'sync.completed' })
    ], 'tok')
    await store.add([ev({ id: 'aaaaaaaa-0', time: '2026-11-25T10:00:04.000Z', type: 'sync.started', agent: 'pc2' })], 'tok') // same `now`
    const page = await store.query({ limit: 10 })
    expect(page.events.map(e => e.event.id)).toEqual(['aaaaaaaa-0', 'aaaaaaaa-3', 'mmmmmmmm-2', 'zzzzzzzz-1'])
    // paging goes on below the last key without repeating or skipping
    const first = await store.query({ limit: 2 })
    const second = await store.query({ limit: 2, before: first.next ?? undefined })
    expect([...first.events, ...second.events].map(e => e.event.id)).toEqual(page.events.map(e => e.event.id))
  })

  it('records the agent\'s own peer id from its sync events, never the peer id a peer.banned event names', async () => {
    await store.add([ev({ type: 'sync.completed', peerId: '12D3KooWAgentOwnId' })], 'tok')
    await store.add([ev({ type: 'peer.banned', time: '2026-11-25T10:01:00.000Z', peerId: '12D3KooWBannedPeer', error: 'bad chunk' })], 'tok')
    const rec = (await db.sublevel<string, any>('agents', { valueEncoding: 'json' }).get('pc1'))
    expect(rec.peerId).toBe('12D3KooWAgentOwnId')
  })

  it('keeps per image/version/site counts from each agent\'s latest state', async () => {
    await store.add([
      ev({ agent: 'pc1', type: 'sync.started', time: '2026-11-25T10:00:00.000Z' }),
      ev({ agent: 'pc2', type: 'sync.started', time: '2026-11-25T10:00:00.000Z' }),
      ev({ agent: 'pc3', type: 'sync.started', time: '2026-11-25T10:00:00.000Z', site: 'lyon' })
    ], 'tok')
    expect(store.report({ image: 'desk' })).toEqual([
      expect.objectContaining({ version: 'v1', site: 'lyon', clients: 0, inProgress: 1, failed: 0 }),
      expect.objectContaining({ version: 'v1', site: 'paris', clients: 0, inProgress: 2, failed: 0 })
    ])
    await store.add([
      ev({ agent: 'pc1', type: 'sync.completed', time: '2026-11-25T10:05:00.000Z', bytes: { local: 600, peers: 300, origin: 100 } }),
      ev({ agent: 'pc2', type: 'sync.failed', time: '2026-11-25T10:05:00.000Z', error: 'disk full', bytes: { local: 10, peers: 0, origin: 90 } })
    ], 'tok')
    const paris = store.report({ image: 'desk', site: 'paris' })
    expect(paris).toEqual([{ image: 'desk', version: 'v1', site: 'paris', clients: 1, inProgress: 0, failed: 1, bytes: { local: 610, peers: 300, origin: 190 }, wanSavedPercent: 82.7 }])

    // pc1 moves to v2: it counts as a v1 client until v2 completes, then only as v2
    await store.add([ev({ agent: 'pc1', type: 'sync.progress', version: 'v2', time: '2026-11-25T11:00:00.000Z', bytes: { local: 1, peers: 1, origin: 1 } })], 'tok')
    expect(store.report({ version: 'v2' })).toEqual([expect.objectContaining({ clients: 0, inProgress: 1, bytes: { local: 0, peers: 0, origin: 0 } })])
    await store.add([ev({ agent: 'pc1', type: 'sync.completed', version: 'v2', time: '2026-11-25T11:01:00.000Z' })], 'tok')
    expect(store.report({ version: 'v2' })).toEqual([expect.objectContaining({ clients: 1, inProgress: 0 })])
    expect(store.report({ version: 'v1', site: 'paris' })).toEqual([expect.objectContaining({ clients: 0, failed: 1 })])

    // an old event re-sent late does not move the state back
    await store.add([ev({ agent: 'pc1', type: 'sync.started', version: 'v1', time: '2026-11-25T09:00:00.000Z' })], 'tok')
    expect(store.report({ version: 'v2' })).toEqual([expect.objectContaining({ clients: 1, inProgress: 0 })])
    expect(store.report({ version: 'v1', site: 'paris' })).toEqual([expect.objectContaining({ clients: 0, inProgress: 0 })])

    // times compare as times, not text: 12:00:00.5Z is after 12:00:00Z though it sorts before it as a string
    await store.add([ev({ agent: 'pc1', type: 'sync.started', version: 'v3', time: '2026-11-25T12:00:00Z' })], 'tok')
    await store.add([ev({ agent: 'pc1', type: 'sync.completed', version: 'v3', time: '2026-11-25T12:00:00.5Z' })], 'tok')
    expect(store.report({ version: 'v3' })).toEqual([expect.objectContaining({ clients: 1, inProgress: 0 })])
  })

  it('keeps aggregates and agents across a restart', async () => {
    await store.add([ev({ agent: 'pc9', type: 'sync.completed', peerId: '12D3KooWtest', servedBytes: 5000, time: '2026-11-25T10:05:00.000Z' })], 'tok')
    // an older report re-sent late does not replace the newer one
    await store.add([ev({ agent: 'pc9', type: 'sync.failed', servedBytes: 100, time: '2026-11-25T09:00:00.000Z' })], 'tok')
    await store.stop()
    const again = createEventStore({ db })
    await again.start()
    expect(again.report({})).toEqual([expect.objectContaining({ clients: 1 })])
    const agents = []
    for await (const a of again.agents()) agents.push(a)
    expect(agents).toEqual([expect.objectContaining({ agent: 'pc9', site: 'paris', peerId: '12D3KooWtest', servedBytes: 5000, servedAt: '2026-11-25T10:05:00.000Z' })])
  })

  it('pages newest first with filters and sweeps events past retention', async () => {
    for (let i = 0; i < 5; i++) {
      now += 1000
      await store.add([ev({ site: i % 2 === 0 ? 'paris' : 'lyon', agent: `pc${i}` })], 'tok')
    }
    const first = await store.query({ limit: 2 })
    expect(first.events.map(e => e.event.agent)).toEqual(['pc4', 'pc3'])
    const second = await store.query({ limit: 2, before: first.next! })
    expect(second.events.map(e => e.event.agent)).toEqual(['pc2', 'pc1'])
    const third = await store.query({ limit: 2, before: second.next! })
    expect(third.events.map(e => e.event.agent)).toEqual(['pc0'])
    expect(third.next).toBeNull()
    expect((await store.query({ limit: 10, site: 'lyon' })).events.map(e => e.event.agent)).toEqual(['pc3', 'pc1'])

    // everything that arrived before pc3's event goes; the ids go too, so a re-send is accepted again
    const cutoff = new Date(Date.parse(first.events[1].receivedAt))
    expect(await store.sweep(cutoff)).toBe(3)
    expect((await store.query({ limit: 10 })).events.map(e => e.event.agent)).toEqual(['pc4', 'pc3'])
    expect(store.report({}).length).toBeGreaterThan(0) // reports outlive raw events
  })

  it('retention also drops agents not seen since the cutoff and aggregates that count no agent and are idle', async () => {
    now = Date.parse('2026-11-25T12:00:00Z')
    await store.add([ev({ agent: 'gone', site: 'old-site', type: 'sync.completed', bytes: { local: 1, peers: 0, origin: 0 } })], 'tok')
    await store.add([ev({ agent: 'gone-too', site: 'old-site', type: 'sync.failed', bytes: { local: 0, peers: 0, origin: 5 } })], 'tok')
    now = Date.parse('2026-12-25T12:00:00Z')
    await store.add([ev({ agent: 'live', site: 'new-site', type: 'sync.completed', time: '2026-12-25T11:00:00.000Z' })], 'tok')
    expect(store.report({}).map(r => r.site).sort()).toEqual(['new-site', 'old-site'])
    await store.sweep(new Date('2026-12-01T00:00:00Z'))
    // the old agents left (and their counts with them), so old-site's row counts nobody and has not changed since: gone
    expect(store.report({}).map(r => r.site)).toEqual(['new-site'])
    const agents: string[] = []
    for await (const a of store.agents()) agents.push(a.agent)
    expect(agents).toEqual(['live'])
    // and it stays gone across a restart
    await store.stop()
    store = createEventStore({ db }, { now: () => now })
    await store.start()
    expect(store.report({}).map(r => r.site)).toEqual(['new-site'])
  })

  it('caps the agent records of one owner; known agents keep reporting', async () => {
    const owner = 't:abc'
    const first = await store.add([ev({ agent: 't:abc/a1' }), ev({ agent: 't:abc/a2' })], 'abc', { owner, maxAgents: 2 })
    expect(first).toMatchObject({ accepted: 2, rejected: 0 })
    expect(await store.add([ev({ agent: 't:abc/a3' }), ev({ agent: 't:abc/a1', type: 'sync.completed' })], 'abc', { owner, maxAgents: 2 })).toMatchObject({ accepted: 1, rejected: 1 })
    // another owner has its own budget, and the count survives a restart
    expect(await store.add([ev({ agent: 't:xyz/a1' })], 'xyz', { owner: 't:xyz', maxAgents: 2 })).toMatchObject({ accepted: 1 })
    await store.stop()
    store = createEventStore({ db }, { now: () => now })
    await store.start()
    expect(await store.add([ev({ agent: 't:abc/a4' })], 'abc', { owner, maxAgents: 2 })).toMatchObject({ accepted: 0, rejected: 1 })
  })
})
