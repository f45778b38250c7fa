/**
 * This agent's place in the swarm of one image version: a capability for it (POST
 * /v1/capabilities) and the site's rendezvous, kept for the whole sync (manifest, then blocks)
 * and renewed when the capability nears its expiry.
 */
import type { AbortOptions } from '../utils/interface.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import type { AgentLogger } from './interface.ts'
import { createRendezvous, type Rendezvous, type Swarm } from './swarm/index.ts'

/** A capability this close to expiry (seconds) is asked for again. */
const CAPABILITY_RENEW_SECONDS = 60

/** The swarm of one version as this agent joined it. */
export interface Joined {
  image: string
  version: string
  swarm: Swarm
  capability: Uint8Array
  /** Unix seconds. */
  expires: number
  rendezvous: Rendezvous
  /** Peer multiaddrs (with /p2p/) the last rendezvous refresh returned. */
  peerAddrs: string[]
}

/** Joins versions one at a time (a new one leaves the one before). */
export interface VersionJoiner {
  /** Joins image@version on swarm `s`; undefined when the coordinator gives no capability (the policy does not share this image with peers). */
  join: (s: Swarm, image: string, version: string, options: AbortOptions) => Promise<Joined | undefined>
  /** Stops the rendezvous of the version joined last and removes its registration (the node stops serving). */
  leave: () => Promise<void>
}

/** A joiner for the agent's site. */
export function createVersionJoiner (components: { client: CoordinatorClient, logger: AgentLogger }, init: { site: string }): VersionJoiner {
  const { client, logger } = components
  let joined: Joined | undefined
  const isJoined = (node: Swarm, image: string, version: string): boolean =>
    joined != null && joined.swarm === node && joined.image === image && joined.version === version
  return {
    async join (node, image, version, options) {
      if (isJoined(node, image, version) && (joined as Joined).expires - Date.now() / 1000 > CAPABILITY_RENEW_SECONDS) return joined
      let cap: { capability: Uint8Array, expires: number }
      try {
        cap = await client.capability({ image, version, peerId: node.peerId }, options)
      } catch (err) {
        logger.warn(`swarm: no capability for ${image}@${version} (${(err as Error).message}); not fetching from peers`)
        return undefined
      }
      if (joined != null && isJoined(node, image, version)) {
        joined.capability = cap.capability
        joined.expires = cap.expires
        return joined
      }
      joined?.rendezvous.stop()
      const rendezvousComponents = { swarm: node, register: client.registerPeer, listPeers: client.listPeers, leavePeers: client.leavePeers, logger }
      const rendezvous = createRendezvous(rendezvousComponents, { site: init.site, image, version })
      joined = { image, version, swarm: node, capability: cap.capability, expires: cap.expires, rendezvous, peerAddrs: [] }
      return joined
    },
    async leave () {
      const left = joined
      joined = undefined
      await left?.rendezvous.leave()
    }
  }
}

/** Refreshes the rendezvous of `j` (its peerAddrs); a failure is logged and leaves the last list. */
export async function refreshPeers (j: Joined, logger: AgentLogger, options: AbortOptions): Promise<string[]> {
  try {
    j.peerAddrs = await j.rendezvous.refresh(options)
  } catch (err) {
    logger.warn(`swarm: rendezvous with the coordinator failed: ${(err as Error).message}`)
  }
  return j.peerAddrs
}
