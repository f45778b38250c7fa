import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createErrorHandler } from '../../../coordinator/http-errors.ts'
import type { CoordinatorEnv, Logger, Principal } from '../../../coordinator/interface.ts'
import { openMetaDb, type MetaDb } from '../../../coordinator/meta-db.ts'
import { createSwarmRoutes } from '../../../coordinator/swarm-routes.ts'
import { loadOrCreatePeerKey } from '../../../peer-agent/swarm/identity.ts'
import { RENDEZVOUS_LEAVE_MS } from '../../../peer-agent/swarm/constants.ts'
import { createRendezvous } from '../../../peer-agent/swarm/rendezvous.ts'
import type { Swarm } from '../../../peer-agent/swarm/interface.ts'
import { CapabilityResponse, PeerLeaveResponse, PeerList, PeerRegistrationResponse } from '../../../protocol/swarm-api.ts'
import { coordinatorKeys, makeVersion, memoryProvider, startNode, testLog } from './helpers.ts'

const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }
const principal: Principal = {
  kind: 'machine', user: 'tok', groups: ['desk'],
  policy: { groups: ['desk'], images: ['desk'], wanLimitBps: 0, lanSharing: true, lanUploadBps: 0, maxPeers: 8, updateWindows: [], indexFolders: { linux: [], windows: [], macos: [] } }
}

describe('rendezvous through the coordinator routes, and the node identity', () => {
  let dir: string
  let db: MetaDb
  let app: Hono<CoordinatorEnv>
  let keys: Awaited<ReturnType<typeof coordinatorKeys>>
  const nodes: Swarm[] = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'trimswarm-rendezvous-'))
    db = await openMetaDb(join(dir, 'coord'))
    keys = await coordinatorKeys()
    app = new Hono<CoordinatorEnv>()
    app.use(async (c, next) => { c.set('principal', principal); await next() })
    app.route('/', createSwarmRoutes({ db, signer: { privateKey: keys.privateKey }, logger: quiet }))
    app.onError(createErrorHandler(quiet))
  })
  afterAll(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const json = async (path: string, init?: RequestInit): Promise<unknown> => {
    const res = await app.request(path, init)
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`)
    return await res.json()
  }

  it('agents of a site find each other through the coordinator and fetch with a capability it issued', async () => {
    const v = makeVersion(11, 12, 2)
    const agents = await Promise.all([0, 1, 2].map(async () => (await startNode(keys.publicKeyRaw)).swarm))
    nodes.push(...agents)
    agents[0].serve({ image: 'desk', version: 'v1', chunkCount: 12, provider: memoryProvider(v.chunks.entries()) })
    const rendezvous = agents.map(swarm => createRendezvous({
      swarm,
      logger: testLog(),
      register: async (body) => PeerRegistrationResponse.parse(await json('/v1/peers', { method: 'POST', body: JSON.stringify(body) })),
      listPeers: async (q) => PeerList.parse(await json(`/v1/peers?site=${q.site}&image=${q.image ?? ''}&version=${q.version ?? ''}`))
    }, { site: 'paris', image: 'desk', version: 'v1' }))
    for (const r of rendezvous) await r.refresh()
    // The last one to register saw both others.
    const found = await rendezvous[2].refresh()
    expect(new Set(found.map(a => a.split('/p2p/')[1]))).toEqual(new Set([agents[0].peerId, agents[1].peerId]))
    const cap = CapabilityResponse.parse(await json('/v1/capabilities', { method: 'POST', body: JSON.stringify({ image: 'desk', version: 'v1', peerId: agents[2].peerId }) }))
    const got = new Map<number, Uint8Array>()
    const session = agents[2].createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: Buffer.from(cap.capability, 'base64'),
      onChunk: async (i, bytes) => { got.set(i, bytes) }
    })
    await session.start() // no `peers`: the rendezvous connections are enough
    await session.done
    expect(got.size).toBe(12)
    expect(session.stats().byPeer[agents[0].peerId]).toBeGreaterThan(0)
    await session.close()
    for (const r of rendezvous) r.stop()
  })

  it('keeps the peer id across restarts in a 0600 key file, and refuses a damaged one', async () => {
    const file = join(dir, 'agent', 'swarm.key')
    const k1 = await loadOrCreatePeerKey(file)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const k2 = await loadOrCreatePeerKey(file)
    expect(Buffer.compare(k1, k2)).toBe(0)
    const a = (await startNode(keys.publicKeyRaw, { privateKey: k1 })).swarm
    const id = a.peerId
    await a.stop()
    const b = (await startNode(keys.publicKeyRaw, { privateKey: k2 })).swarm
    nodes.push(b)
    expect(b.peerId).toBe(id)
    writeFileSync(file, 'not a key')
    await expect(loadOrCreatePeerKey(file)).rejects.toThrow(/cannot use the swarm key/)
  })

  it('a token bound to a site: the coordinator\'s site wins over --site, and the agent says so once', async () => {
    const bound = new Hono<CoordinatorEnv>()
    bound.use(async (c, next) => { c.set('principal', { ...principal, user: 'tok-paris', site: 'paris' }); await next() })
    bound.route('/', createSwarmRoutes({ db, signer: { privateKey: keys.privateKey }, logger: quiet }))
    bound.onError(createErrorHandler(quiet))
    const call = async (path: string, init?: RequestInit): Promise<unknown> => await (await bound.request(path, init)).json()
    const node = (await startNode(keys.publicKeyRaw)).swarm
    nodes.push(node)
    const log = testLog()
    const r = createRendezvous({
      swarm: node,
      logger: log,
      register: async (body) => PeerRegistrationResponse.parse(await call('/v1/peers', { method: 'POST', body: JSON.stringify(body) })),
      listPeers: async (q) => PeerList.parse(await call(`/v1/peers?site=${q.site}`))
    }, { site: 'lyon', image: 'desk', version: 'v1' })
    await r.refresh()
    await r.refresh()
    r.stop()
    expect(log.lines.filter(l => l.includes('puts this agent in site paris'))).toHaveLength(1)
    const paris = PeerList.parse(await json('/v1/peers?site=paris&image=desk&version=v1')).peers.map(p => p.peerId)
    expect(paris).toContain(node.peerId)
  })

  it('an agent that leaves is off the site\'s list at once; a coordinator that fails or hangs does not hold it', async () => {
    const [a, b] = await Promise.all([0, 1].map(async () => (await startNode(keys.publicKeyRaw)).swarm))
    nodes.push(a, b)
    const calls: string[] = []
    const components = (swarm: Swarm, leavePeers: (body: { peerId: string }, options?: { signal?: AbortSignal }) => Promise<PeerLeaveResponse>): Parameters<typeof createRendezvous>[0] => ({
      swarm,
      logger: testLog(),
      register: async (body) => PeerRegistrationResponse.parse(await json('/v1/peers', { method: 'POST', body: JSON.stringify(body) })),
      listPeers: async (q) => PeerList.parse(await json(`/v1/peers?site=${q.site}&image=${q.image ?? ''}&version=${q.version ?? ''}`)),
      leavePeers: async (body, options) => { calls.push(body.peerId); return await leavePeers(body, options) }
    })
    const viaRoute = async (body: { peerId: string }): Promise<PeerLeaveResponse> => PeerLeaveResponse.parse(await json('/v1/peers/leave', { method: 'POST', body: JSON.stringify(body) }))
    const init = { site: 'oslo', image: 'desk', version: 'v3' }
    const ra = createRendezvous(components(a, viaRoute), init)
    const rb = createRendezvous(components(b, viaRoute), init)
    await ra.refresh()
    expect((await rb.refresh()).map(x => x.split('/p2p/')[1])).toContain(a.peerId)
    await ra.leave()
    expect(calls).toEqual([a.peerId])
    expect((await rb.refresh()).map(x => x.split('/p2p/')[1])).not.toContain(a.peerId)
    await rb.leave()

    // never registered: nothing to remove, no call
    calls.length = 0
    await createRendezvous(components(a, viaRoute), init).leave()
    expect(calls).toEqual([])
    // the coordinator refuses: logged, not thrown
    const failing = createRendezvous(components(a, async () => { throw new Error('503 Service Unavailable') }), init)
    await failing.refresh()
    await expect(failing.leave()).resolves.toBeUndefined()
    // the coordinator hangs: given up with the signal (RENDEZVOUS_LEAVE_MS), not waited for
    const hanging = createRendezvous(components(a, async (_body, options) => await new Promise((_resolve, reject) => {
      options?.signal?.addEventListener('abort', () => { reject(options.signal?.reason) })
    })), init)
    await hanging.refresh()
    const t = performance.now()
    await hanging.leave()
    expect(performance.now() - t).toBeLessThan(RENDEZVOUS_LEAVE_MS + 1000)
  })

  it('a renewal still in flight when the agent leaves lands before the leave, so the agent is not listed again', async () => {
    const [a, b] = await Promise.all([0, 1].map(async () => (await startNode(keys.publicKeyRaw)).swarm))
    nodes.push(a, b)
    const order: string[] = []
    let holdRenewal = false
    let release: () => void = () => {}
    const register = async (body: object): Promise<PeerRegistrationResponse> => {
      if (holdRenewal) await new Promise<void>(resolve => { release = resolve })
      const answer = PeerRegistrationResponse.parse(await json('/v1/peers', { method: 'POST', body: JSON.stringify(body) }))
      order.push('register')
      return answer
    }
    const listPeers = async (q: { site: string, image?: string, version?: string }): Promise<PeerList> => PeerList.parse(await json(`/v1/peers?site=${q.site}&image=${q.image ?? ''}&version=${q.version ?? ''}`))
    const leavePeers = async (body: { peerId: string }): Promise<PeerLeaveResponse> => {
      order.push('leave')
      return PeerLeaveResponse.parse(await json('/v1/peers/leave', { method: 'POST', body: JSON.stringify(body) }))
    }
    const init = { site: 'bergen', image: 'desk', version: 'v4' }
    const ra = createRendezvous({ swarm: a, logger: testLog(), register, listPeers, leavePeers }, init)
    const rb = createRendezvous({ swarm: b, logger: testLog(), register, listPeers }, init)
    await ra.refresh()
    holdRenewal = true
    const renewal = ra.refresh() // the timer's renewal, sent just before the agent stops
    const leaving = ra.leave()
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(order).toEqual(['register']) // the leave waits for the renewal's answer
    holdRenewal = false
    release()
    await renewal
    await leaving
    expect(order).toEqual(['register', 'register', 'leave'])
    expect((await rb.refresh()).map(x => x.split('/p2p/')[1])).not.toContain(a.peerId)
    rb.stop()

    // a renewal that never comes back holds the leave no longer than RENDEZVOUS_LEAVE_MS in all
    const rc = createRendezvous({ swarm: a, logger: testLog(), register, listPeers, leavePeers }, init)
    await rc.refresh()
    holdRenewal = true
    void rc.refresh().catch(() => {})
    const t = performance.now()
    await rc.leave()
    expect(performance.now() - t).toBeLessThan(RENDEZVOUS_LEAVE_MS + 1000)
    expect(performance.now() - t).toBeGreaterThanOrEqual(RENDEZVOUS_LEAVE_MS - 100)
    holdRenewal = false
    release()
  })
})
