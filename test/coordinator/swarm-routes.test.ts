import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createErrorHandler } from '../../coordinator/http-errors.ts'
import type { CoordinatorEnv, Logger, Principal } from '../../coordinator/interface.ts'
import { openMetaDb, type MetaDb } from '../../coordinator/meta-db.ts'
import { createSwarmRoutes, SWARM_PEER_TTL_SECONDS } from '../../coordinator/swarm-routes.ts'
import { verifyCapability } from '../../protocol/capability.ts'
import { importPublicKey } from '../../protocol/signed-manifest.ts'
import { CapabilityResponse, PeerLeaveResponse, PeerList } from '../../protocol/swarm-api.ts'

const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }
const peerA = '12D3KooWDd2b9SqVsbDrCm2EiaoFGT5xSHwPEfhVgzLwffCG3taE'
const peerB = '12D3KooWSHRgNBXDrs1qgpn48DoVrmunChEvxCuV3yGuX2m1Aeip'

function principal (images: string[], lanSharing: boolean, user = 'tok-1'): Principal {
  return {
    kind: 'machine',
    user,
    groups: ['desk'],
    policy: { groups: ['desk'], images, wanLimitBps: 0, lanSharing, lanUploadBps: 0, maxPeers: 8, updateWindows: [], indexFolders: { linux: [], windows: [], macos: [] } }
  }
}

describe('coordinator swarm routes', () => {
  let dir: string
  let db: MetaDb
  let app: Hono<CoordinatorEnv>
  let publicKey: CryptoKey

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'trimswarm-swarm-routes-'))
    db = await openMetaDb(dir)
    const pair = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
    publicKey = await importPublicKey(new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)))
    // A tiny app standing in for the real auth middleware: the test header picks the principal.
    const principals: Record<string, Principal> = {
      desk: principal(['desk'], true),
      noshare: principal(['desk'], false),
      other: principal(['build'], true),
      desk2: principal(['desk'], true, 'tok-2')
    }
    app = new Hono<CoordinatorEnv>()
    app.use(async (c, next) => { c.set('principal', principals[c.req.header('x-test-principal') ?? 'desk']); await next() })
    app.route('/', createSwarmRoutes({ db, signer: { privateKey: pair.privateKey }, logger: quiet, capabilityTtlSeconds: 600 }))
    app.onError(createErrorHandler(quiet))
  })
  afterAll(async () => {
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const post = async (path: string, body: unknown, who = 'desk'): Promise<Response> => await app.request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', 'x-test-principal': who } })
  const get = async (path: string, who = 'desk'): Promise<Response> => await app.request(path, { headers: { 'x-test-principal': who } })

  it('issues a capability bound to the peer id that verifies offline with the coordinator key', async () => {
    const res = await post('/v1/capabilities', { image: 'desk', version: 'v1', peerId: peerA })
    expect(res.status).toBe(200)
    const body = CapabilityResponse.parse(await res.json())
    const now = Math.floor(Date.now() / 1000)
    expect(body.expires).toBeGreaterThanOrEqual(now + 599)
    expect(body.expires).toBeLessThanOrEqual(now + 601)
    const cap = await verifyCapability(Buffer.from(body.capability, 'base64'), publicKey, { peer: peerA, image: 'desk', version: 'v1' })
    expect(cap).toEqual({ image: 'desk', version: 'v1', peer: peerA, expires: body.expires })
    await expect(verifyCapability(Buffer.from(body.capability, 'base64'), publicKey, { peer: peerB })).rejects.toThrow(/bound to peer/)
  })

  it('refuses a capability outside policy (image not allowed, LAN sharing off) and bad bodies', async () => {
    expect((await post('/v1/capabilities', { image: 'desk', version: 'v1', peerId: peerA }, 'other')).status).toBe(403)
    expect((await post('/v1/capabilities', { image: 'desk', version: 'v1', peerId: peerA }, 'noshare')).status).toBe(403)
    const bad = await post('/v1/capabilities', { image: '../x', version: 'v1', peerId: peerA })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: { name: string } }).error.name).toBe('ValidationError')
    expect((await post('/v1/capabilities', { image: 'desk', version: 'v1', peerId: peerA, admin: true })).status).toBe(400)
    expect((await post('/v1/capabilities', { image: 'desk', version: 'v1', peerId: 'not/a/peer' })).status).toBe(400)
  })

  it('registers peers per site and lists the live ones of a site for an image version', async () => {
    const addrA = `/ip4/127.0.0.1/tcp/4001/p2p/${peerA}`
    const r1 = await post('/v1/peers', { peerId: peerA, multiaddrs: [addrA], site: 'paris', image: 'desk', version: 'v1' })
    expect(r1.status).toBe(200)
    expect(((await r1.json()) as { ttlSeconds: number }).ttlSeconds).toBe(SWARM_PEER_TTL_SECONDS)
    expect((await post('/v1/peers', { peerId: peerB, multiaddrs: ['/ip4/127.0.0.1/tcp/4002'], site: 'paris', image: 'desk', version: 'v2' })).status).toBe(200)
    expect((await post('/v1/peers', { peerId: peerB, multiaddrs: ['/ip4/127.0.0.1/tcp/4003'], site: 'lyon' })).status).toBe(200)
    const list = async (q: string): Promise<string[]> => {
      const res = await get(`/v1/peers?${q}`)
      expect(res.status).toBe(200)
      return PeerList.parse(await res.json()).peers.map(p => `${p.peerId.slice(-4)}@${p.multiaddrs[0].split('/')[4]}`)
    }
    expect((await list('site=paris')).sort()).toEqual([`${peerA.slice(-4)}@4001`, `${peerB.slice(-4)}@4002`].sort())
    expect(await list('site=paris&image=desk&version=v1')).toEqual([`${peerA.slice(-4)}@4001`])
    expect(await list('site=lyon&image=desk&version=v1')).toEqual([`${peerB.slice(-4)}@4003`]) // registered without an image: may hold any
    expect(await list('site=nice')).toEqual([])
  })

  it('drops expired registrations and refuses bad ones', async () => {
    const peers = db.sublevel<string, { expires: number }>('swarm-peers', { valueEncoding: 'json' })
    const old = await peers.get(`paris!${peerA}`)
    await peers.put(`paris!${peerA}`, { ...old, expires: Math.floor(Date.now() / 1000) - 1 } as any)
    const res = await get('/v1/peers?site=paris&image=desk&version=v1')
    expect(PeerList.parse(await res.json()).peers).toEqual([])
    expect(await peers.get(`paris!${peerA}`)).toBeUndefined()
    // Someone else's peer id in the multiaddr, a non-multiaddr, no site, LAN sharing off, unknown query.
    expect((await post('/v1/peers', { peerId: peerA, multiaddrs: [`/ip4/127.0.0.1/tcp/1/p2p/${peerB}`], site: 'paris' })).status).toBe(400)
    expect((await post('/v1/peers', { peerId: peerA, multiaddrs: ['/nonsense/1'], site: 'paris' })).status).toBe(400)
    expect((await post('/v1/peers', { peerId: peerA, multiaddrs: ['/ip4/127.0.0.1/tcp/1'] })).status).toBe(400)
    expect((await post('/v1/peers', { peerId: peerA, multiaddrs: ['/ip4/127.0.0.1/tcp/1'], site: 'paris' }, 'noshare')).status).toBe(403)
    expect((await post('/v1/peers', { peerId: peerA, multiaddrs: ['/ip4/127.0.0.1/tcp/1'], site: 'paris', image: 'desk' })).status).toBe(400)
    expect((await get('/v1/peers?site=paris&x=1')).status).toBe(400)
    expect((await get('/v1/peers?site=paris&image=desk', 'other')).status).toBe(403)
    expect((await get('/v1/peers')).status).toBe(400)
  })

  it('a leaving agent removes its own registrations in every site, and nobody else\'s', async () => {
    const peerC = '12D3KooWLRPJAA5o6Z6gPJxWwvPAQXXzqVJwuWd8BsPVsq8Tu1fy'
    const peerD = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
    const register = async (peerId: string, site: string, port: number, who = 'desk'): Promise<void> => {
      expect((await post('/v1/peers', { peerId, multiaddrs: [`/ip4/127.0.0.1/tcp/${port}`], site, image: 'desk', version: 'v9' }, who)).status).toBe(200)
    }
    const listed = async (site: string): Promise<string[]> =>
      PeerList.parse(await (await get(`/v1/peers?site=${site}&image=desk&version=v9`)).json()).peers.map(p => p.peerId).sort()
    const leave = async (peerId: string, who = 'desk'): Promise<Response> => await post('/v1/peers/leave', { peerId }, who)
    await register(peerC, 'rome', 4101)
    await register(peerC, 'oslo', 4102)
    await register(peerD, 'rome', 4103, 'desk2')
    expect(await listed('rome')).toEqual([peerC, peerD].sort())
    // another token cannot take C off the list
    const theirs = await leave(peerC, 'desk2')
    expect(theirs.status).toBe(200)
    expect(PeerLeaveResponse.parse(await theirs.json()).removed).toBe(0)
    expect(await listed('rome')).toEqual([peerC, peerD].sort())
    // its registrant can, in both sites; D stays
    const mine = await leave(peerC)
    expect(PeerLeaveResponse.parse(await mine.json()).removed).toBe(2)
    expect(await listed('rome')).toEqual([peerD])
    expect(await listed('oslo')).toEqual([])
    // leaving again is harmless; a bad body is a 400 with the usual error body
    expect(PeerLeaveResponse.parse(await (await leave(peerC)).json()).removed).toBe(0)
    const bad = await post('/v1/peers/leave', { peerId: 'not/a/peer' })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: { name: string } }).error.name).toBe('ValidationError')
    expect((await post('/v1/peers/leave', { peerId: peerC, site: 'rome' })).status).toBe(400)
    // the registrant may register the id again (it is still bound to it), and only it
    await register(peerC, 'rome', 4104)
    expect((await post('/v1/peers', { peerId: peerC, multiaddrs: ['/ip4/127.0.0.1/tcp/4105'], site: 'rome' }, 'desk2')).status).toBe(409)
    expect(await listed('rome')).toEqual([peerC, peerD].sort())
  })
})
