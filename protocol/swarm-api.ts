/**
 * Coordinator HTTP bodies of the LAN swarm: capabilities (permission to fetch
 * an image version from peers) and the per-site peer rendezvous. Routes are
 * mounted by the coordinator from coordinator/swarm-routes.ts.
 */
import { MAX_PEER_ID_LENGTH } from './capability.ts'
import { name } from './api.ts'
import { array, integer, object, optional, string, type Infer } from './schema.ts'

/** Swarm route paths. */
export const swarmRoutes = {
  capabilities: '/v1/capabilities',
  peers: '/v1/peers',
  peersLeave: '/v1/peers/leave'
} as const

/** A libp2p peer id in its string form. */
export const peerIdText = string({ minLength: 1, maxLength: MAX_PEER_ID_LENGTH, pattern: /^[A-Za-z0-9]+$/ })

/** A multiaddr in string form; must end with the registering peer's own /p2p/ id or carry none. */
export const multiaddrText = string({ minLength: 3, maxLength: 256, pattern: /^\/[A-Za-z0-9._:/-]+$/ })

/** POST /v1/capabilities */
export const CapabilityRequest = object({ image: name, version: name, peerId: peerIdText })
export type CapabilityRequest = Infer<typeof CapabilityRequest>

/** The signed capability (protocol/capability.ts envelope) as base64, and its expiry (unix seconds). */
export const CapabilityResponse = object({ capability: string({ maxLength: 2048, description: 'capability envelope bytes, base64' }), expires: integer() })
export type CapabilityResponse = Infer<typeof CapabilityResponse>

/**
 * POST /v1/peers — (re-)registers a peer of a site for SWARM_PEER_TTL_SECONDS; agents re-register before it lapses.
 * `site` is only a hint: the coordinator's own site for the caller (token site, `sites` subnet map) wins; the
 * response says which site was used. A peer id is renewed only by the token (or user) that registered it.
 */
export const PeerRegistration = object({
  peerId: peerIdText,
  multiaddrs: array(multiaddrText, { minItems: 1, maxItems: 16 }),
  site: optional(name),
  image: optional(name),
  version: optional(name)
})
export type PeerRegistration = Infer<typeof PeerRegistration>

/** One live peer of a site. */
export const PeerEntry = object({
  peerId: peerIdText,
  multiaddrs: array(multiaddrText, { maxItems: 16 }),
  image: optional(name),
  version: optional(name),
  expires: integer({ description: 'unix seconds when the registration lapses' })
})
export type PeerEntry = Infer<typeof PeerEntry>

/** POST /v1/peers response: the registration's expiry and the TTL to re-register within. */
export const PeerRegistrationResponse = object({ expires: integer(), ttlSeconds: integer(), site: optional(name) })
export type PeerRegistrationResponse = Infer<typeof PeerRegistrationResponse>

/** GET /v1/peers?site=&image=&version= — the peers of the caller's site (`site` as for POST), of images its policy gives. */
export const PeerList = object({ site: optional(name), peers: array(PeerEntry, { maxItems: 10_000 }) })
export type PeerList = Infer<typeof PeerList>

/**
 * POST /v1/peers/leave — an agent that stops serving removes its registrations of `peerId`, so the site's
 * other agents stop dialling it (and waiting for it) before the TTL would have lapsed. Only the token (or
 * user) that registered them can; others' registrations of that id, if any, are left alone.
 */
export const PeerLeave = object({ peerId: peerIdText })
export type PeerLeave = Infer<typeof PeerLeave>

/** POST /v1/peers/leave response: how many of the caller's registrations were removed (0 when none was live). */
export const PeerLeaveResponse = object({ removed: integer() })
export type PeerLeaveResponse = Infer<typeof PeerLeaveResponse>

/** Swarm bodies, for the OpenAPI document. */
export const swarmSchemas = {
  CapabilityRequest, CapabilityResponse, PeerRegistration, PeerRegistrationResponse, PeerEntry, PeerList, PeerLeave, PeerLeaveResponse
}
