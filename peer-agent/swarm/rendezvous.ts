/**
 * The coordinator as rendezvous: registers this node's multiaddrs for its
 * site (renewed at half the TTL; after a failure, e.g. a coordinator restart,
 * tried again after RENDEZVOUS_RETRY_MS) and dials the live peers of the site
 * the coordinator returns. Leaving removes the registration, so the site's
 * other agents stop dialling (and waiting for) a node that is gone instead of
 * until its TTL lapses; a registration still in flight is let land first, or it
 * would list the node again after its leave. The HTTP calls come from the
 * agent's coordinator client, so this stays free of auth and retries.
 */
import { once } from 'node:events'
import type { PeerLeave, PeerLeaveResponse, PeerList, PeerRegistration, PeerRegistrationResponse } from '../../protocol/swarm-api.ts'
import { RENDEZVOUS_LEAVE_MS, RENDEZVOUS_RETRY_MS } from './constants.ts'
import type { Swarm, SwarmLogger } from './interface.ts'

/** What the rendezvous loop uses. */
export interface RendezvousComponents {
  swarm: Swarm
  /** POST /v1/peers */
  register: (body: PeerRegistration, options?: { signal?: AbortSignal }) => Promise<PeerRegistrationResponse>
  /** GET /v1/peers?site=&image=&version= */
  listPeers: (query: { site: string, image?: string, version?: string }, options?: { signal?: AbortSignal }) => Promise<PeerList>
  /** POST /v1/peers/leave; without it, leave() only stops the loop (the registration lapses after its TTL). */
  leavePeers?: (req: PeerLeave, options?: { signal?: AbortSignal }) => Promise<PeerLeaveResponse>
  logger: SwarmLogger
}

/** Options of one rendezvous loop. */
export interface RendezvousInit {
  site: string
  /** The version being synced, if any (peers of other versions are not listed then). */
  image?: string
  version?: string
  /** Addresses to register; default the node's listening multiaddrs that are not wildcard. */
  multiaddrs?: string[]
}

/** A running rendezvous loop. */
export interface Rendezvous {
  /** Registers and dials once now; returns the peer multiaddrs found (for a session's `peers`). */
  refresh: (options?: { signal?: AbortSignal }) => Promise<string[]>
  /** Stops the loop; the registration stays until its TTL lapses (the node goes on serving). */
  stop: () => void
  /**
   * Stops the loop and removes the registration, if one was made, after any registration still in
   * flight has been answered; all of it bounded by RENDEZVOUS_LEAVE_MS (a coordinator away does not
   * hold the agent's exit). Never throws: the TTL is the fallback.
   */
  leave: () => Promise<void>
}

/** Starts the loop: refresh now, then at half the registration TTL. */
export function createRendezvous (components: RendezvousComponents, init: RendezvousInit): Rendezvous {
  const { swarm, logger } = components
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  /** The site the coordinator put us in, once it said so and it differs from ours (said once: it only changes with the admin's config). */
  let toldSite: string | undefined
  /** Whether a registration was made (leave() has something to remove). */
  let registered = false
  /** Registrations sent and not answered yet: leave() lets them land before it removes ours. */
  const registering = new Set<Promise<unknown>>()

  async function refreshOnce (options: { signal?: AbortSignal }): Promise<string[]> {
    const multiaddrs = (init.multiaddrs ?? swarm.getMultiaddrs()).filter(a => !a.includes('/0.0.0.0/') && !a.includes('/::/')).slice(0, 16)
    let ttl = 60
    if (multiaddrs.length > 0) {
      const version = init.image != null ? { image: init.image, version: init.version } : {}
      const reg: PeerRegistration = { peerId: swarm.peerId, multiaddrs, site: init.site, ...version }
      registered = true // before the answer: a request cut short may still have landed
      const sent = components.register(reg, options)
      registering.add(sent)
      let answer: PeerRegistrationResponse
      try {
        answer = await sent
      } finally {
        registering.delete(sent)
      }
      ttl = answer.ttlSeconds
      if (answer.site != null && answer.site !== init.site && answer.site !== toldSite) {
        toldSite = answer.site
        logger.info(`swarm: the coordinator puts this agent in site ${answer.site} (its token's or its subnet's), not ${init.site}`)
      }
    }
    const list = await components.listPeers({ site: init.site, image: init.image, version: init.version }, options)
    const addrs: string[] = []
    for (const p of list.peers) {
      if (p.peerId === swarm.peerId) continue
      for (const a of p.multiaddrs) addrs.push(a.includes('/p2p/') ? a : `${a}/p2p/${p.peerId}`)
    }
    if (addrs.length > 0) await swarm.addPeers(addrs, options)
    schedule(Math.max(5, ttl / 2) * 1000)
    return addrs
  }

  /**
   * refresh(), and on failure (the coordinator away past the client's retries) again after
   * RENDEZVOUS_RETRY_MS: otherwise our registration lapses and new peers of the site never find us.
   */
  async function refresh (options: { signal?: AbortSignal } = {}): Promise<string[]> {
    try {
      return await refreshOnce(options)
    } catch (err) {
      if (options.signal?.aborted !== true) schedule(RENDEZVOUS_RETRY_MS)
      throw err
    }
  }

  function schedule (ms: number): void {
    if (stopped) return
    clearTimeout(timer)
    timer = setTimeout(() => {
      refresh().catch(err => {
        logger.warn(`swarm: rendezvous with the coordinator failed: ${(err as Error).message}; trying again in ${RENDEZVOUS_RETRY_MS / 1000} s`)
      })
    }, ms)
    timer.unref?.()
  }

  return {
    refresh,
    stop () { stopped = true; clearTimeout(timer) },
    async leave () {
      stopped = true
      clearTimeout(timer)
      const leavePeers = components.leavePeers
      if (!registered || leavePeers == null) return
      const signal = AbortSignal.timeout(RENDEZVOUS_LEAVE_MS)
      try {
        // a renewal in flight that landed after the leave would list us again until its TTL
        if (registering.size > 0) await Promise.race([Promise.allSettled(registering), once(signal, 'abort')])
        await leavePeers({ peerId: swarm.peerId }, { signal })
      } catch (err) {
        logger.debug?.(`swarm: could not remove our rendezvous registration (${(err as Error).message}); it lapses by itself`)
      }
    }
  }
}
