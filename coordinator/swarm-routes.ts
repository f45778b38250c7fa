/**
 * The LAN swarm's coordinator routes: capabilities (POST /v1/capabilities)
 * and the per-site peer rendezvous (POST/GET /v1/peers, POST /v1/peers/leave). Behind the auth
 * middleware: every route reads `c.get('principal')`. Registrations are soft
 * state with a TTL (SWARM_PEER_TTL_SECONDS), kept in the metadata database so
 * a coordinator restart does not empty the sites.
 *
 * Against a hostile token holder (docs/SECURITY.md): the site is the one the
 * coordinator assigns (site-assignment.ts), not the request's; a peer id is
 * bound to the token (or user) that registered it until its registration
 * lapses, so nobody else can renew or overwrite it; a token holds at most
 * `maxRegistrationsPerToken` live registrations; a listing shows only peers
 * of images the caller's policy gives (image-less ones only to the
 * registrant's groups) and takes registrants in turn, so one token's
 * registrations cannot push everyone else's off the list.
 */
import { Hono, type Context } from 'hono'
import { multiaddr } from '@multiformats/multiaddr'
import { signCapability } from '../protocol/capability.ts'
import { ConflictError, ForbiddenError, ValidationError } from '../protocol/errors.ts'
import {
  CapabilityRequest, PeerLeave, PeerRegistration, swarmRoutes,
  type CapabilityResponse, type PeerEntry, type PeerLeaveResponse, type PeerList, type PeerRegistrationResponse
} from '../protocol/swarm-api.ts'
import { assertImageAccess, canAccessImage, principalKey } from './access.ts'
import { DEFAULT_MAX_PEER_REGISTRATIONS_PER_TOKEN } from './constants.ts'
import { RetryAfterError } from './http-errors.ts'
import type { CoordinatorEnv, Logger, ManifestSigner, Principal } from './interface.ts'
import type { MetaDb } from './meta-db.ts'
import { nameParam, readJson } from './request-body.ts'
import { createSiteAssigner, type SiteAssigner } from './site-assignment.ts'
import { createSiteMap } from './sites.ts'

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
  /** Who registered it (principal key): only they may renew it; not returned to other agents. */
  by: string
  /** The registrant's groups: a registration without an image is listed only to callers sharing one. */
  groups?: string[]
}

/** Who holds a peer id (sublevel `swarm-peer-owners`): the registrant's principal key until its last registration lapses. */
interface PeerOwner {
  by: string
  expires: number
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

/** What the swarm routes use besides the database and signer. */
export interface SwarmRoutesComponents {
  db: MetaDb
  signer: Pick<ManifestSigner, 'privateKey'>
  logger: Logger
  capabilityTtlSeconds?: number
  /** Site of each caller (default: no token sites, no subnet map: the agent's hint within the per-token cap). */
  sites?: SiteAssigner
  /** The client's address for the `sites` subnet map (default: the request log's `clientIp`). */
  clientAddress?: (c: Context<CoordinatorEnv>) => string
  /** Live registrations per token or user (DEFAULT_MAX_PEER_REGISTRATIONS_PER_TOKEN). */
  maxRegistrationsPerToken?: number
}

/** Live registrations for one listing, registrants taken in turn (freshest first within each). */
export function fairList (live: Array<{ by: string, expires: number }>, max: number): number[] {
  const byOwner = new Map<string, number[]>()
  live.forEach((r, i) => { let l = byOwner.get(r.by); if (l == null) { l = []; byOwner.set(r.by, l) } l.push(i) })
  const queues = [...byOwner.values()].map(l => l.sort((a, b) => live[b].expires - live[a].expires))
  const out: number[] = []
  for (let round = 0; out.length < max; round++) {
    let any = false
    for (const q of queues) {
      if (round < q.length && out.length < max) { out.push(q[round]); any = true }
    }
    if (!any) break
  }
  return out
}

/** The swarm routes, to mount behind the auth middleware. */
export function createSwarmRoutes (components: SwarmRoutesComponents): Hono<CoordinatorEnv> {
  const { signer, logger } = components
  const ttl = components.capabilityTtlSeconds ?? DEFAULT_CAPABILITY_TTL_SECONDS
  const sites = components.sites ?? createSiteAssigner({ siteMap: createSiteMap() })
  const clientAddress = components.clientAddress ?? ((c: Context<CoordinatorEnv>) => c.get('clientIp') ?? '')
  const maxRegistrations = components.maxRegistrationsPerToken ?? DEFAULT_MAX_PEER_REGISTRATIONS_PER_TOKEN
  const peers = components.db.sublevel<string, PeerRecord>('swarm-peers', { valueEncoding: 'json' })
  const owners = components.db.sublevel<string, PeerOwner>('swarm-peer-owners', { valueEncoding: 'json' })
  /** `<principal key>\x00<site>!<peer id>` -> expiry, to count a token's live registrations (and find them when it leaves). */
  const byOwner = components.db.sublevel<string, number>('swarm-peers-by', { valueEncoding: 'json' })
  /** The byOwner key of `owner`'s registration stored in `peers` at `peerKey` (`<site>!<peer id>`), and back. */
  const ownerKey = (owner: string, peerKey: string): string => `${owner}\x00${peerKey}`
  const peerKeyOf = (owner: string, key: string): string => key.slice(owner.length + 1)
  /** Every byOwner entry of `owner`. */
  const ownerEntries = (owner: string): AsyncIterable<[string, number]> => byOwner.iterator({ gt: ownerKey(owner, ''), lt: ownerKey(owner, '\xff') })
  const app = new Hono<CoordinatorEnv>()
  const nowSeconds = (): number => Math.floor(Date.now() / 1000)

  /** The caller's site: the coordinator's, else the one it names (required then). */
  const siteFor = async (c: Context<CoordinatorEnv>, hint: string | undefined): Promise<string> => {
    const principal = c.get('principal')
    const address = clientAddress(c)
    const assigned = sites.assigned(principal, address)
    if (assigned != null) return assigned
    if (hint == null) {
      throw new ValidationError('site: required (the coordinator has no site for this token: ' +
        'the admin can set one with token create --site or the config\'s "sites")')
    }
    return (await sites.siteOf(principal, address, hint)).site
  }

  /** Live registrations of `owner`; deletes the lapsed ones it meets (and their peer ids' lapsed bindings). Stops counting at `max`. */
  const liveCount = async (owner: string, now: number, max: number): Promise<{ count: number, soonest: number }> => {
    let count = 0
    let soonest = Number.MAX_SAFE_INTEGER
    const lapsed: string[] = []
    for await (const [key, expires] of ownerEntries(owner)) {
      if (expires < now) { lapsed.push(key); continue }
      count++
      soonest = Math.min(soonest, expires)
      if (count >= max) break
    }
    if (lapsed.length > 0) {
      // keys end in `!<peer id>` (site names cannot hold `!`)
      const ids = [...new Set(lapsed.map(k => k.slice(k.lastIndexOf('!') + 1)))]
      const bindings = await owners.getMany(ids)
      const ops: any[] = lapsed.map(key => ({ type: 'del', sublevel: byOwner, key }))
      ids.forEach((id, i) => {
        const binding = bindings[i]
        if (binding != null && binding.by === owner && binding.expires < now) ops.push({ type: 'del', sublevel: owners, key: id })
      })
      await components.db.batch(ops)
    }
    return { count, soonest }
  }

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

  // one registration at a time (in every coordinator sharing the store): the owner check and the cap are read-modify-write
  const serial = async <T>(fn: () => Promise<T>): Promise<T> => await components.db.lock('swarm-peers', fn)

  app.post(swarmRoutes.peers, async (c) => {
    const principal = c.get('principal')
    const reg = await readJson(c, PeerRegistration)
    assertLanSharing(principal)
    if (reg.image != null) assertImageAccess(principal, reg.image)
    if ((reg.image == null) !== (reg.version == null)) throw new ValidationError('image and version go together')
    checkMultiaddrs(reg.peerId, reg.multiaddrs)
    const site = await siteFor(c, reg.site)
    const owner = principalKey(principal)
    const body = await serial(async (): Promise<PeerRegistrationResponse> => {
      const now = nowSeconds()
      const held = await owners.get(reg.peerId)
      if (held != null && held.expires >= now && held.by !== owner) {
        logger.warn('peer registration refused: peer id held by another token', { user: principal.user, peer: reg.peerId })
        const until = new Date(held.expires * 1000).toISOString()
        throw new ConflictError(`peer id ${reg.peerId} is registered by another token or user until ${until}; only its registrant can renew it`)
      }
      const peerKey = `${site}!${reg.peerId}`
      const indexKey = ownerKey(owner, peerKey)
      if ((await byOwner.get(indexKey) ?? 0) < now) {
        const { count, soonest } = await liveCount(owner, now, maxRegistrations)
        if (count >= maxRegistrations) {
          const wait = Math.max(1, soonest - now)
          const message = `${principal.user} already has ${count} live peer registrations, the most one token or user may hold; try again in ${wait} s`
          throw new RetryAfterError(message, wait)
        }
      }
      const expires = now + SWARM_PEER_TTL_SECONDS
      const record: PeerRecord = {
        peerId: reg.peerId, multiaddrs: reg.multiaddrs, image: reg.image, version: reg.version, expires, by: owner, groups: principal.groups
      }
      const binding: PeerOwner = { by: owner, expires: Math.max(expires, held?.by === owner ? held.expires : 0) }
      await components.db.batch([
        { type: 'put', sublevel: peers, key: peerKey, value: record },
        { type: 'put', sublevel: owners, key: reg.peerId, value: binding },
        { type: 'put', sublevel: byOwner, key: indexKey, value: expires }
      ] as any)
      return { expires, ttlSeconds: SWARM_PEER_TTL_SECONDS, site }
    })
    return c.json(body)
  })

  app.post(swarmRoutes.peersLeave, async (c) => {
    const principal = c.get('principal')
    const req = await readJson(c, PeerLeave)
    const owner = principalKey(principal)
    // no lanSharing check: an agent whose policy changed since it registered may still clean up
    const body = await serial(async (): Promise<PeerLeaveResponse> => {
      const now = nowSeconds()
      const ops: any[] = []
      let removed = 0
      // the owner's index: at most its cap of live registrations, plus lapsed ones not yet swept
      for await (const [key, expires] of ownerEntries(owner)) {
        if (!key.endsWith(`!${req.peerId}`)) continue
        ops.push({ type: 'del', sublevel: byOwner, key })
        const peerKey = peerKeyOf(owner, key)
        // the id may have lapsed and been registered since by someone else in the same site: theirs stays
        const rec = await peers.get(peerKey)
        if (rec?.by !== owner) continue
        ops.push({ type: 'del', sublevel: peers, key: peerKey })
        if (expires >= now) removed++
      }
      if (ops.length > 0) await components.db.batch(ops)
      return { removed }
    })
    logger.debug('peer left', { user: principal.user, peer: req.peerId, removed: body.removed })
    return c.json(body)
  })

  app.get(swarmRoutes.peers, async (c) => {
    const principal = c.get('principal')
    const q = c.req.query()
    for (const k of Object.keys(q)) if (!['site', 'image', 'version'].includes(k)) throw new ValidationError(`${k}: unknown query parameter`)
    const hint = q.site == null || q.site === '' ? undefined : nameParam(q.site, 'site')
    const image = q.image == null || q.image === '' ? undefined : nameParam(q.image, 'image')
    const version = q.version == null || q.version === '' ? undefined : nameParam(q.version, 'version')
    assertLanSharing(principal)
    if (image != null) assertImageAccess(principal, image)
    const site = await siteFor(c, hint)
    const now = nowSeconds()
    const live: PeerRecord[] = []
    const expired: string[] = []
    for await (const [key, rec] of peers.iterator({ gt: `${site}!`, lt: `${site}!\xff` })) {
      if (rec.expires < now) { expired.push(key); continue }
      if (!visibleTo(principal, rec)) continue
      // Peers registered without an image may hold any version; others must match what was asked.
      if (rec.image != null && image != null && (rec.image !== image || (version != null && rec.version !== version))) continue
      live.push(rec)
    }
    if (expired.length > 0) await peers.batch(expired.map(key => ({ type: 'del' as const, key })))
    const body: PeerList = {
      site,
      peers: fairList(live, SWARM_PEERS_LISTED).map(i => live[i]).map((r): PeerEntry => ({
        peerId: r.peerId, multiaddrs: r.multiaddrs, expires: r.expires, ...(r.image != null ? { image: r.image, version: r.version } : {})
      }))
    }
    return c.json(body)
  })

  return app
}

/** Whether a registration may be shown to the caller: images its policy gives; image-less ones to the registrant's groups. */
function visibleTo (principal: Principal, rec: PeerRecord): boolean {
  if (principal.kind === 'admin') return true
  if (rec.image != null) return canAccessImage(principal, rec.image)
  return rec.groups?.some(g => principal.groups.includes(g)) === true
}
