/**
 * The signed manifest from the agents of the site (docs/PROTOCOL.md "Manifest exchange"): asks
 * the peers the rendezvous lists, takes the first envelope that verifies, and downloads it from
 * the origin itself only when the election (lan-plan.ts `manifestStep`) says this agent is the one.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { AbortOptions } from '../utils/interface.ts'
import { LAN_MANIFEST_FETCH_WAIT_MS, LAN_MANIFEST_LEADER_WAIT_MS, LAN_MANIFEST_POLL_MS } from './constants.ts'
import { openListedManifest } from './image-sync.ts'
import type { AgentLogger } from './interface.ts'
import type { Joined } from './lan-join.ts'
import { manifestStep, type ManifestAnswerStatus, type ManifestElection } from './lan-plan.ts'
import { peerIdOf, type Swarm } from './swarm/index.ts'

/** What the manifest search uses. */
export interface SiteManifestComponents {
  logger: AgentLogger
  /** The pinned coordinator key. */
  coordinatorKey: CryptoKey
  /** A peer sent a manifest that does not verify (reported as a `peer.banned` event). */
  onBanned?: (info: { image: string, version: string, peerId: string, reason: string }) => void
}

/** One search: the version joined, what the sync knows about it, and how to download it from the origin. */
export interface SiteManifestInit {
  swarm: Swarm
  joined: Joined
  site: string
  /** The version's info (image-sync checks the envelope against it). */
  info: Parameters<typeof openListedManifest>[2]
  fromOrigin: (options: AbortOptions) => Promise<Uint8Array>
}

/** The ids of the peers in `addrs`, without `exclude`. */
function peerIds (addrs: readonly string[], exclude: (id: string) => boolean): string[] {
  const ids = new Set<string>()
  for (const a of addrs) { const id = peerIdOf(a); if (id != null && !exclude(id)) ids.add(id) }
  return [...ids]
}

/** The signed manifest of the joined version: from a peer of the site, or from the origin when this agent is the one to download it. */
export async function fetchSiteManifest (components: SiteManifestComponents, init: SiteManifestInit, options: AbortOptions): Promise<Uint8Array> {
  const { logger, coordinatorKey } = components
  const { swarm: s, joined, info } = init
  const { image, version } = joined
  async function download (): Promise<Uint8Array> {
    const done = s.fetchingManifest(image, version)
    try {
      const envelope = await init.fromOrigin(options)
      await openListedManifest(envelope, coordinatorKey, info) // before peers are served it; image-sync checks it again
      s.holdManifest(image, version, envelope)
      return envelope
    } finally {
      done()
    }
  }
  /** Asks every listed peer once; the first envelope that verifies, else what each said. */
  async function askRound (bad: Set<string>): Promise<Uint8Array | ManifestAnswerStatus[]> {
    const ids = peerIds(joined.peerAddrs, id => id === s.peerId || bad.has(id))
    const answers = await Promise.all(ids.map(async id => {
      try {
        return { id, answer: await s.askManifest(id, joined.capability, options) }
      } catch (err) {
        logger.info(`swarm: cannot ask ${id} for the manifest of ${image}@${version}: ${(err as Error).message}`)
        return { id, answer: undefined }
      }
    }))
    for (const { id, answer } of answers) {
      if (answer?.status !== 'manifest') continue
      try {
        await openListedManifest(answer.envelope, coordinatorKey, info) // a bad peer is skipped and reported
      } catch (err) {
        bad.add(id)
        const reason = `sent a manifest that does not verify: ${(err as Error).message}`
        logger.warn(`swarm: peer ${id} ${reason}; not asking it again`)
        components.onBanned?.({ image, version, peerId: id, reason })
        continue
      }
      s.holdManifest(image, version, answer.envelope)
      logger.info(`swarm: manifest of ${image}@${version} from peer ${id}`)
      return answer.envelope
    }
    return answers.map(({ id, answer }) => ({ id, status: answer?.status }))
  }
  const bad = new Set<string>()
  const election: ManifestElection = {}
  let refreshed = false
  for (;;) {
    options.signal?.throwIfAborted()
    const round = await askRound(bad)
    if (round instanceof Uint8Array) return round
    const step = manifestStep(round, s.peerId, election, performance.now())
    if (step === 'fetch-stalled') {
      logger.warn(`swarm: no peer delivered the manifest of ${image}@${version} in ${LAN_MANIFEST_FETCH_WAIT_MS} ms; taking it from the origin`)
      return await download()
    }
    if (step === 'leader') {
      // agents that start together may not all be registered yet: look once more before downloading
      if (!refreshed) {
        refreshed = true
        const before = new Set(peerIds(joined.peerAddrs, () => false))
        joined.peerAddrs = await joined.rendezvous.refresh(options).catch(() => joined.peerAddrs)
        if (peerIds(joined.peerAddrs, id => before.has(id)).length > 0) continue
      }
      logger.info(`swarm: ${image}@${version}: this agent downloads the manifest for site ${init.site}`)
      return await download()
    }
    if (step === 'leader-stalled') {
      const waited = `${LAN_MANIFEST_LEADER_WAIT_MS} ms`
      logger.info(`swarm: ${image}@${version}: no peer of site ${init.site} fetched the manifest in ${waited}; taking it from the origin`)
      return await download()
    }
    await sleep(LAN_MANIFEST_POLL_MS, undefined, { signal: options.signal })
  }
}
