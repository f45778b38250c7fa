/**
 * The "peers" block source of a sync (image-sync's extraSources): joins the version's swarm,
 * decides who takes the site's delta pack (lan-plan.ts), runs a swarm session for the
 * unverified chunks and, round by round, fetches from the origin the chunks the claim rule
 * gives this agent (session.originChunks) as one block batch of their missing blocks.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Manifest } from '../protocol/manifest.ts'
import { chunkCid } from '../protocol/block-id.ts'
import type { AbortOptions } from '../utils/interface.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { LAN_LEADER_STALL_MS, LAN_PACK_WAIT_MS, LAN_WAIT_MS } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import type { AgentLogger } from './interface.ts'
import { refreshPeers, type Joined } from './lan-join.ts'
import { claimedMissingBlocks, claimRoundChunks, createLeaderWatch, siteLeader } from './lan-plan.ts'
import { createBlockBatchSource, fetchChunkFromOrigin } from './origin-sources.ts'
import { plural } from './progress-reporter.ts'
import { peerIdOf, type ServedVersion, type Swarm, type SwarmSession } from './swarm/index.ts'

/** The sync being served: its manifest, its verified chunks, and the session fetching for it. */
export interface ServedSync {
  manifest: Manifest
  isVerified: (i: number) => boolean
  served: ServedVersion
  session?: SwarmSession
}

/** What the peers source uses of LAN sharing. */
export interface PeersSourceComponents {
  client: CoordinatorClient
  logger: AgentLogger
  onBanned?: (info: { image: string, version: string, peerId: string, reason: string }) => void
  /** The node and the sync it serves, once the temp file's serving is set up. */
  serving: () => Promise<{ swarm: Swarm, sync: ServedSync } | undefined>
  join: (s: Swarm, image: string, version: string, options: AbortOptions) => Promise<Joined | undefined>
  /** Peers that exchanged chunks of a version with us (what --linger waits for). */
  sessionPeers: Set<string>
  /** This agent takes the site's delta pack: the listed peers wait for its chunks. */
  tookPack: (waiters: Set<string>) => void
}

const idsOf = (addrs: readonly string[]): string[] => addrs.map(peerIdOf).filter(id => id != null)

/** Fetches `chunks` (given to us by the claim rule) from the origin: their missing blocks in one batch, whole chunks for what then fails. */
async function fetchClaimed (
  components: PeersSourceComponents, ctx: SyncContext, chunks: number[], isVerified: (i: number) => boolean, options: AbortOptions
): Promise<void> {
  const { client, logger } = components
  const m = ctx.manifest
  const blocks = claimedMissingBlocks(m, chunks, ctx.isMissing)
  if (blocks.length > 0) {
    const sub: SyncContext = {
      ...ctx,
      missing: () => blocks.filter(b => ctx.isMissing(b)),
      missingCount: () => blocks.filter(b => ctx.isMissing(b)).length
    }
    await createBlockBatchSource({ client, logger }, { image: m.name, version: m.version }).fill(sub, options)
  }
  // a chunk that still does not verify (a bad block from the origin): fetched whole
  for (const ci of chunks) {
    if (isVerified(ci)) continue
    const fetched = await fetchChunkFromOrigin(client, ctx, ci, options)
    // the coordinator's copy is damaged or gone: a peer may have it; the sync asks again at its end
    if (fetched !== true) logger.warn(`chunk ${ci} (${chunkCid(m.chunks[ci].digest).toString()}): the coordinator cannot serve it (${fetched.message})`)
  }
}

/**
 * The peers listed for the version, or undefined when this agent does without a session: an update
 * with nobody else (the origin's delta pack), or with this agent as the site's pack leader.
 */
async function listPeers (
  components: PeersSourceComponents, node: Swarm, joined: Joined, update: boolean, site: string, options: AbortOptions
): Promise<{ addrs: string[], packLeader?: string } | undefined> {
  const { logger } = components
  let addrs = await refreshPeers(joined, logger, options)
  // a delta pack pays only once per site: with peers it would be pulled whole by each. Agents
  // that start together register within moments: look once more, so all see the same list.
  if (update) {
    await sleep(LAN_PACK_WAIT_MS, undefined, { signal: options.signal })
    addrs = joined.peerAddrs = await joined.rendezvous.refresh(options).catch(() => [])
    if (addrs.length === 0) {
      logger.info(`swarm: no peer of site ${site} on ${joined.image}@${joined.version}; using the origin's delta pack`)
      return undefined
    }
  }
  // peers the coordinator lists for this version may fetch from us after we are done (--linger)
  for (const id of idsOf(addrs)) components.sessionPeers.add(id)
  if (!update) return { addrs }
  // An update with peers: one agent of the site (the lowest peer id listed) takes the delta
  // pack and serves what it applies; the others wait for it and claim origin chunks only if
  // it is not connected or makes no progress for LAN_LEADER_STALL_MS.
  const packLeader = siteLeader(node.peerId, idsOf(addrs))
  if (packLeader !== node.peerId) return { addrs, packLeader }
  logger.info(`swarm: ${joined.image}@${joined.version}: this agent takes the delta pack for site ${site}`)
  components.tookPack(new Set(idsOf(addrs)))
  return undefined
}

/**
 * Claim rounds until every chunk is verified or given up: waits while the pack leader delivers,
 * else fetches what the claim rule gives us from the origin. Claimed chunks that could not be
 * verified stay reserved (peers are not told we have them), left to the sync's later phases.
 */
async function claimRounds (
  components: PeersSourceComponents, ctx: SyncContext, session: SwarmSession, sync: ServedSync, packLeader: string | undefined, options: AbortOptions
): Promise<void> {
  const givenUp = new Set<number>()
  const roundChunks = claimRoundChunks(sync.manifest)
  const leader = createLeaderWatch(session.remaining(), performance.now(), LAN_LEADER_STALL_MS)
  const waitForPeers = async (): Promise<void> => {
    await session.waitForChange({ signal: options.signal, timeoutMs: LAN_WAIT_MS })
    await ctx.tick()
  }
  while (session.remaining() > givenUp.size) {
    options.signal?.throwIfAborted()
    for (const id of session.peers()) components.sessionPeers.add(id)
    if (packLeader != null && session.peers().includes(packLeader) && leader.waiting(session.remaining(), performance.now())) { await waitForPeers(); continue }
    const mine = session.originChunks(roundChunks)
    if (mine.length === 0) { await waitForPeers(); continue }
    try {
      await fetchClaimed(components, ctx, mine, sync.isVerified, options)
    } catch (err) {
      session.release(mine.filter(i => !sync.isVerified(i)))
      throw err
    }
    for (const i of mine) {
      if (sync.isVerified(i)) session.markHave(i)
      else givenUp.add(i)
    }
    await ctx.tick()
  }
}

/** The peers source for one sync of `manifest`. */
export function createPeersSource (components: PeersSourceComponents, init: { manifest: Manifest, fromVersion?: string, site: string }): BlockSource {
  const { logger } = components
  const { manifest } = init
  return {
    name: 'peers',
    kind: 'peers',
    async fill (ctx, options) {
      const serving = await components.serving()
      if (serving == null || serving.sync.manifest !== manifest) return
      const { swarm: node, sync } = serving
      const { name: image, version } = manifest
      const joined = await components.join(node, image, version, options)
      if (joined == null) return
      const listed = await listPeers(components, node, joined, init.fromVersion != null, init.site, options)
      if (listed == null) return
      const session = node.createSession({
        image,
        version,
        manifest,
        capability: joined.capability,
        need: ctx.unverifiedChunks(),
        peers: listed.addrs,
        signal: options.signal,
        onChunk: async (i, bytes) => {
          // the session verified it against this manifest (length and full digest) before handing it over
          if (!ctx.offerChunk(i, bytes, 'peers', true)) throw new Error(`chunk ${i} was refused`)
        },
        onEvent: (e) => {
          if (e.type !== 'peer.banned') return
          logger.warn(`swarm: banned peer ${e.peerId}: chunk ${e.index}: ${e.reason}`)
          components.onBanned?.({ image, version, peerId: e.peerId, reason: e.reason })
        }
      })
      sync.session = session
      try {
        await session.start()
        await claimRounds(components, ctx, session, sync, listed.packLeader, options)
        for (const id of session.peers()) components.sessionPeers.add(id)
        const st = session.stats()
        const fromPeers = `${plural(st.chunksFromPeers, 'chunk')} from ${plural(Object.keys(st.byPeer).length, 'peer')}`
        logger.info(`swarm: ${image}@${version}: ${fromPeers}, ${st.chunksForOrigin} from the origin`)
      } finally {
        await session.close()
        if (sync.session === session) sync.session = undefined
      }
    }
  }
}
