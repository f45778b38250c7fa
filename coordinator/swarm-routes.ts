/**
 * The LAN swarm's coordinator routes: capabilities (POST /v1/capabilities)
 * and the per-site peer rendezvous (POST/GET /v1/peers). Behind the auth
 * middleware: every route reads `c.get('principal')`. Registrations are soft
 * state with a TTL (SWARM_PEER_TTL_SECONDS), kept in the metadata database so
 * a coordinator restart does not empty the sites.
 */
import { Hono } from 'hono'
import { multiaddr } from '@multiformats/multiaddr'
import { signCapability } from '../protocol/capability.ts'
import { ForbiddenError, ValidationError } from '../protocol/errors.ts'
import { CapabilityRequest, PeerRegistration, swarmRoutes, type CapabilityResponse, type PeerEntry, type PeerList, type PeerRegistrationResponse } from '../protocol/swarm-api.ts'
import { assertImageAccess } from './access.ts'
import type { CoordinatorEnv, Logger, ManifestSigner, Principal } from './interface.ts'
import type { MetaDb } from './meta-db.ts'
import { nameParam, readJson } from './request-body.ts'

/** Lifetime of a capability: long enough for one sync (new peer connections need a valid one), short enough to lapse soon after policy changes. */
export const DEFAULT_CAPABILITY_TTL_SECONDS = 3600

/** A peer registration lapses after this unless renewed (agents renew at half of it). */
export const SWARM_PEER_TTL_SECONDS = 120

/** Most peers returned by GET /v1/peers (the freshest registrations first). */
export const SWARM_PEERS_LISTED = 100

interface PeerRecord {
  peerId: string
  multiaddrs: string[]
  image?: string
  version?: string
  expires: number
  /** Who registered it (for the log; not returned to other agents). */
  by: string
}

function assertLanSharing (principal: Principal): void {
  if (principal.kind !== 'admin' && !principal.policy.lanSharing) throw new ForbiddenError(`policy does not allow LAN sharing for ${principal.user}`)
}

function checkMultiaddrs (peerId: string, addrs: string[]): void {
  for (const a of addrs) {
    let ma
    try {
      ma = multiaddr(a)
    } catch {
      throw new ValidationError(`multiaddrs: ${JSON.stringify(a.slice(0, 80))} is not a multiaddr`)
    }
    const p2p = ma.getComponents().filter(c => c.name === 'p2p').map(c => c.value)
    if (p2p.some(id => id !== peerId)) throw new ValidationError(`multiaddrs: ${a} names another peer than ${peerId}`)
  }
}

/** The swarm routes, to mount behind the auth middleware. */
export function createSwarmRoutes (components: { db: MetaDb, signer: Pick<ManifestSigner, 'privateKey'>, logger: Logger, capabilityTtlSeconds?: number }): Hono<CoordinatorEnv> {
  const { signer, logger } = components
  const ttl = components.capabilityTtlSeconds ?? DEFAULT_CAPABILITY_TTL_SECONDS
  const peers = components.db.sublevel<string, PeerRecord>('swarm-peers', { valueEncoding: 'json' })
  const app = new Hono<CoordinatorEnv>()
  const nowSeconds = (): number => Math.floor(Date.now() / 1000)

  app.post(swarmRoutes.capabilities, async (c) => {
    const principal = c.get('principal')
    const req = await readJson(c, CapabilityRequest)
    assertImageAccess(principal, req.image)
    assertLanSharing(principal)
    const expires = nowSeconds() + ttl
    const bytes = await signCapability({ image: req.image, version: req.version, peer: req.peerId, expires }, signer.privateKey)
    logger.debug('capability issued', { user: principal.user, image: req.image, version: req.version, peer: req.peerId })
    const body: CapabilityResponse = { capability: Buffer.from(bytes).toString('base64'), expires }
    return c.json(body)
  })

  app.post(swarmRoutes.peers, async (c) => {
    const principal = c.get('principal')
    const reg = await readJson(c, PeerRegistration)
    assertLanSharing(principal)
    if (reg.image != null) assertImageAccess(principal, reg.image)
    if ((reg.image == null) !== (reg.version == null)) throw new ValidationError('image and version go together')
    checkMultiaddrs(reg.peerId, reg.multiaddrs)
    const expires = nowSeconds() + SWARM_PEER_TTL_SECONDS
    await peers.put(`${reg.site}!${reg.peerId}`, { peerId: reg.peerId, multiaddrs: reg.multiaddrs, image: reg.image, version: reg.version, expires, by: principal.user })
    const body: PeerRegistrationResponse = { expires, ttlSeconds: SWARM_PEER_TTL_SECONDS }
    return c.json(body)
  })

  app.get(swarmRoutes.peers, async (c) => {
    const principal = c.get('principal')
    const q = c.req.query()
    for (const k of Object.keys(q)) if (!['site', 'image', 'version'].includes(k)) throw new ValidationError(`${k}: unknown query parameter`)
    const site = nameParam(q.site, 'site')
    const image = q.image == null || q.image === '' ? undefined : nameParam(q.image, 'image')
    const version = q.version == null || q.version === '' ? undefined : nameParam(q.version, 'version')
    assertLanSharing(principal)
    if (image != null) assertImageAccess(principal, image)
    const now = nowSeconds()
    const live: PeerRecord[] = []
    const expired: string[] = []
    for await (const [key, rec] of peers.iterator({ gt: `${site}!`, lt: `${site}!\xff` })) {
      if (rec.expires < now) { expired.push(key); continue }
      // Peers registered without an image may hold any version; others must match what was asked.
      if (rec.image != null && image != null && (rec.image !== image || (version != null && rec.version !== version))) continue
      live.push(rec)
    }
    if (expired.length > 0) await peers.batch(expired.map(key => ({ type: 'del' as const, key })))
    live.sort((a, b) => b.expires - a.expires)
    const body: PeerList = {
      peers: live.slice(0, SWARM_PEERS_LISTED).map((r): PeerEntry => ({
        peerId: r.peerId, multiaddrs: r.multiaddrs, expires: r.expires, ...(r.image != null ? { image: r.image, version: r.version } : {})
      }))
    }
    return c.json(body)
  })

  return app
}
