/**
 * Promise (issue 13 item 7): through the coordinator's rendezvous
 * (POST/GET /v1/peers) an ordinary machine token cannot choose its site when
 * the coordinator has one for it, see peers of images its policy does not
 * give, take over another agent's peer id, or flood a site so its real peers
 * are no longer listed. Real coordinators over HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { DEFAULT_POLICY } from '../../coordinator/constants.ts'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { routes } from '../../protocol/api.ts'
import { swarmRoutes, type PeerList } from '../../protocol/swarm-api.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'
import { recordCounts } from './counts.ts'

const MAX_REGISTRATIONS = 40
const peerId = (n: number): string => `12D3KooWHostile${String(n).padStart(6, '0')}`

let tmp: TempDir
const started: Coordinator[] = []

interface Stack { coord: Coordinator, tokens: Record<string, string> }

async function call (coord: Coordinator, path: string, token: string, init: RequestInit = {}): Promise<Response> {
  return await fetch(coord.url + path, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } })
}

/** A coordinator with groups desk and other (LAN sharing on) and tokens a, b (desk), other (other), paris (desk, bound to site paris). */
async function stack (name: string, config: Record<string, unknown> = {}): Promise<Stack> {
  const coord = createCoordinator({ dataDir: join(tmp.path, name), listen: '127.0.0.1:0', logLevel: 'silent', config: { swarm: { maxRegistrationsPerToken: MAX_REGISTRATIONS }, ...config } })
  await coord.start()
  started.push(coord)
  for (const group of ['desk', 'other']) {
    expect((await call(coord, routes.policy(group), coord.adminToken, { method: 'PUT', body: JSON.stringify({ ...DEFAULT_POLICY, images: [group], lanSharing: true }) })).status).toBe(200)
  }
  const tokens: Record<string, string> = {}
  for (const [n, group, site] of [['a', 'desk'], ['b', 'desk'], ['other', 'other'], ['paris', 'desk', 'paris']]) {
    const res = await call(coord, routes.tokens, coord.adminToken, { method: 'POST', body: JSON.stringify({ group, name: n, ...(site != null ? { site } : {}) }) })
    expect(res.status).toBe(201)
    tokens[n] = (await res.json()).token
  }
  return { coord, tokens }
}

async function register (s: Stack, who: string, body: Record<string, unknown>): Promise<Response> {
  return await call(s.coord, swarmRoutes.peers, s.tokens[who], { method: 'POST', body: JSON.stringify(body) })
}

async function list (s: Stack, who: string, query: string): Promise<PeerList> {
  const res = await call(s.coord, `${swarmRoutes.peers}?${query}`, s.tokens[who])
  expect(res.status).toBe(200)
  return await res.json()
}

let s: Stack
let floodRefused = 0

beforeAll(async () => {
  tmp = await tempDir('trimswarm-hostile-rendezvous-')
  s = await stack('main')
})
afterAll(async () => {
  for (const c of started) await c.stop()
  await tmp?.cleanup()
})

describe('hostile clients: rendezvous', () => {
  it('a token bound to a site registers and lists in that site, whatever site it names', async () => {
    const res = await register(s, 'paris', { peerId: peerId(1), multiaddrs: ['/ip4/127.0.0.1/tcp/4001'], site: 'lyon', image: 'desk', version: 'v1' })
    expect(res.status).toBe(200)
    expect((await res.json()).site).toBe('paris')
    // nobody finds it in lyon, the site it named; desk agents of lyon see nothing of paris
    expect((await list(s, 'a', 'site=lyon')).peers.map(p => p.peerId)).not.toContain(peerId(1))
    expect((await list(s, 'a', 'site=paris')).peers.map(p => p.peerId)).toContain(peerId(1))
    // and it cannot look into lyon either: its listing is paris's
    await register(s, 'a', { peerId: peerId(2), multiaddrs: ['/ip4/127.0.0.1/tcp/4002'], site: 'lyon', image: 'desk', version: 'v1' })
    const seen = await list(s, 'paris', 'site=lyon')
    expect(seen.site).toBe('paris')
    expect(seen.peers.map(p => p.peerId)).not.toContain(peerId(2))
  })

  it('the config\'s sites map assigns the site from the client address', async () => {
    const mapped = await stack('mapped', { sites: { '127.0.0.0/8': 'loopback' } })
    const res = await register(mapped, 'a', { peerId: peerId(3), multiaddrs: ['/ip4/127.0.0.1/tcp/4003'], site: 'elsewhere', image: 'desk', version: 'v1' })
    expect((await res.json()).site).toBe('loopback')
    expect((await list(mapped, 'b', 'site=elsewhere')).peers.map(p => p.peerId)).toEqual([peerId(3)])
    expect((await list(mapped, 'b', 'site=elsewhere')).site).toBe('loopback')
  })

  it('a listing shows only peers of images the caller\'s policy gives (no other group\'s addresses)', async () => {
    await register(s, 'a', { peerId: peerId(4), multiaddrs: ['/ip4/10.9.8.7/tcp/4004'], site: 'shared', image: 'desk', version: 'v1' })
    await register(s, 'a', { peerId: peerId(5), multiaddrs: ['/ip4/10.9.8.8/tcp/4005'], site: 'shared' }) // no image: shown to desk only
    await register(s, 'other', { peerId: peerId(6), multiaddrs: ['/ip4/10.9.8.9/tcp/4006'], site: 'shared', image: 'other', version: 'v1' })
    expect((await list(s, 'other', 'site=shared')).peers.map(p => p.peerId)).toEqual([peerId(6)])
    expect((await list(s, 'b', 'site=shared')).peers.map(p => p.peerId).sort()).toEqual([peerId(4), peerId(5)])
  })

  it('another token cannot renew or overwrite an agent\'s registration by re-registering its peer id', async () => {
    const victim = peerId(7)
    expect((await register(s, 'a', { peerId: victim, multiaddrs: ['/ip4/127.0.0.1/tcp/4007'], site: 'hijack', image: 'desk', version: 'v1' })).status).toBe(200)
    const res = await register(s, 'b', { peerId: victim, multiaddrs: ['/ip4/6.6.6.6/tcp/666'], site: 'hijack', image: 'desk', version: 'v1' })
    expect(res.status).toBe(409)
    expect((await res.json()).error.name).toBe('ConflictError')
    // nor in another site it names
    expect((await register(s, 'b', { peerId: victim, multiaddrs: ['/ip4/6.6.6.6/tcp/666'], site: 'hijack-2' })).status).toBe(409)
    const peers = (await list(s, 'b', 'site=hijack')).peers
    expect(peers.map(p => p.multiaddrs)).toEqual([['/ip4/127.0.0.1/tcp/4007']])
    // its owner renews it as before
    expect((await register(s, 'a', { peerId: victim, multiaddrs: ['/ip4/127.0.0.1/tcp/4008'], site: 'hijack', image: 'desk', version: 'v1' })).status).toBe(200)
  })

  it('a token cannot flood a site: its live registrations are capped (429 + Retry-After)', async () => {
    let refused = 0
    let retryAfter = 0
    for (let i = 0; i < 150; i++) {
      const res = await register(s, 'b', { peerId: peerId(1000 + i), multiaddrs: [`/ip4/127.0.0.1/tcp/${20_000 + i}`], site: 'flood', image: 'desk', version: 'v1' })
      if (res.status === 429) {
        refused++
        retryAfter = Number(res.headers.get('retry-after'))
        expect((await res.json()).error.name).toBe('RateLimitedError')
      } else expect(res.status).toBe(200)
    }
    expect(refused).toBeGreaterThanOrEqual(150 - MAX_REGISTRATIONS)
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect((await list(s, 'a', 'site=flood')).peers.length).toBeLessThanOrEqual(MAX_REGISTRATIONS)
    floodRefused = refused
  })

  it('within its cap, one token\'s registrations cannot push the other agents of the site off the listing', async () => {
    const fair = await stack('fair', { swarm: { maxRegistrationsPerToken: 1000 } })
    // the real peer registered first (so it lapses first) and sorts last by id
    const real = '12D3KooWZzRealPeer'
    expect((await register(fair, 'a', { peerId: real, multiaddrs: ['/ip4/127.0.0.1/tcp/4010'], site: 'flood', image: 'desk', version: 'v1' })).status).toBe(200)
    await new Promise(resolve => setTimeout(resolve, 1100)) // a later second: the flood's registrations lapse later
    for (let i = 0; i < 150; i++) {
      expect((await register(fair, 'b', { peerId: peerId(2000 + i), multiaddrs: [`/ip4/127.0.0.1/tcp/${30_000 + i}`], site: 'flood', image: 'desk', version: 'v1' })).status).toBe(200)
    }
    const listed = (await list(fair, 'a', 'site=flood&image=desk&version=v1')).peers.map(p => p.peerId)
    expect(listed).toContain(real)
    await recordCounts('hostile-clients-rendezvous', { promise: 'a machine token cannot choose its site, see other groups\' peers, take over a peer id or flood a site', cases: 6, floodRegistrations: 150, floodRefused, bytesLost: 0 })
  })
})
