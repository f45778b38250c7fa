/**
 * LAN sharing for the agent (docs/ARCHITECTURE.md "Swarm"): one swarm node per
 * agent, started when policy allows `lanSharing`; each sync serves its temp
 * file's verified chunks to peers as they verify, and fetches from peers as the
 * "peers" source, taking from the origin only the chunks the claim rule gives
 * it (session.originChunks), so agents that start together pull each byte over
 * the WAN about once.
 */
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BLOCK_SIZE, BLOCKS_PROTOCOL } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { api } from '../protocol/index.ts'
import { chunkCid } from '../protocol/block-id.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { DATA_FILES, LAN_IDLE_MS, LAN_ORIGIN_BATCH_BYTES, LAN_ORIGIN_MIN_ROUNDS, LAN_LEADER_STALL_MS, LAN_PACK_WAIT_MS, LAN_WAIT_MS } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import type { SyncObserver } from './image-sync.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { prefixKey } from './local-sources.ts'
import { createBlockBatchSource } from './origin-sources.ts'
import { createRendezvous, createSwarm, loadOrCreatePeerKey, type ChunkProvider, type Rendezvous, type ServedVersion, type Swarm, type SwarmSession } from './swarm/index.ts'

/** What LAN sharing uses. */
export interface LanSharingComponents {
  client: CoordinatorClient
  logger: AgentLogger
  /** The pinned coordinator key (verifies capabilities offline). */
  coordinatorKey: (options?: AbortOptions) => Promise<CryptoKey>
  /** A peer sent a bad chunk and was banned (reported as a `peer.banned` event). */
  onBanned?: (info: { image: string, version: string, peerId: string, reason: string }) => void
}

/** Options of LAN sharing (agent flags). */
export interface LanSharingInit {
  dataDir: string
  site: string
  /** Multiaddrs to listen on (--listen); default the swarm's DEFAULT_LISTEN. */
  listen?: string[]
  /** mDNS discovery (--no-mdns turns it off). */
  mdns?: boolean
}

/** LAN sharing of one agent. */
export interface LanSharing {
  /** Reads the policy: starts the node (or applies new caps) when lanSharing is on, stops it when off. */
  prepare: (options?: AbortOptions) => Promise<boolean>
  /** image-sync's extraSources. */
  extraSources: (manifest: Manifest, info: { fromVersion?: string }) => BlockSource[]
  /** image-sync's observer. */
  observer: SyncObserver
  /** Keeps serving until no peer of our sessions has had a block stream open with us for LAN_IDLE_MS, at most `ms`. */
  linger: (ms: number, options?: AbortOptions) => Promise<void>
  /** The node's peer id, once started. */
  readonly peerId: string | undefined
  /** Chunk bytes served to LAN peers by this process's swarm nodes so far; undefined if no node ever ran. */
  servedBytes: () => number | undefined
  stop: () => Promise<void>
}

/** A verified-chunk provider over a file (the temp file while syncing, the output once done). */
function fileProvider (manifest: Manifest, fh: FileHandle, has: (i: number) => boolean): ChunkProvider {
  return {
    has,
    async read (i) {
      const c = manifest.chunks[i]
      const buf = new Uint8Array(c.length)
      let n = 0
      while (n < c.length) {
        const { bytesRead } = await fh.read(buf, n, c.length - n, c.offset + n)
        if (bytesRead === 0) break
        n += bytesRead
      }
      return buf
    }
  }
}

interface Current {
  manifest: Manifest
  fh: FileHandle
  isVerified: (i: number) => boolean
  served: ServedVersion
  session?: SwarmSession
}

/** Creates LAN sharing; nothing runs until prepare() finds lanSharing in the policy. */
export function createLanSharing (components: LanSharingComponents, init: LanSharingInit): LanSharing {
  const { client, logger } = components
  let swarm: Swarm | undefined
  let enabled = false
  let rendezvous: Rendezvous | undefined
  let current: Current | undefined
  /** The temp file's serving set-up (started() cannot await it). */
  let opening: Promise<void> = Promise.resolve()
  /** Peers that exchanged chunks of a version with us in this process's sessions (what --linger waits for). */
  const sessionPeers = new Set<string>()
  /** Finished images still served (daemon: until a newer version replaces them). */
  const finished = new Map<string, { fh: FileHandle, served: ServedVersion }>()

  /** Bytes served by nodes already stopped (a policy change can stop and restart the node). */
  let servedBefore: number | undefined

  async function stopSwarm (): Promise<void> {
    if (swarm != null) servedBefore = (servedBefore ?? 0) + swarm.stats().bytesServed
    rendezvous?.stop()
    rendezvous = undefined
    for (const f of finished.values()) { f.served.close(); await f.fh.close().catch(() => {}) }
    finished.clear()
    await swarm?.stop()
    swarm = undefined
  }

  async function prepare (options: AbortOptions = {}): Promise<boolean> {
    const me = await client.me(options)
    enabled = me.policy.lanSharing
    if (!enabled) {
      if (swarm != null) { logger.info('swarm: policy no longer allows LAN sharing; stopping the node'); await stopSwarm() }
      return false
    }
    const caps = { uploadBps: me.policy.lanUploadBps, maxPeers: me.policy.maxPeers }
    if (swarm != null) { swarm.setCaps(caps); return true }
    const privateKey = await loadOrCreatePeerKey(join(init.dataDir, DATA_FILES.swarmKey))
    swarm = await createSwarm({ logger }, { coordinatorKey: await components.coordinatorKey(options), privateKey, listen: init.listen, mdns: init.mdns ?? true, ...caps })
    logger.info(`swarm: peer ${swarm.peerId} listening on ${swarm.getMultiaddrs().join(' ')}`)
    return true
  }

  const observer: SyncObserver = {
    started ({ manifest, tempPath, isVerified }) {
      if (!enabled || swarm == null) return
      const s = swarm
      opening = open(tempPath, 'r').then(fh => {
        if (swarm !== s) { void fh.close(); return }
        const served = s.serve({ image: manifest.name, version: manifest.version, chunkCount: manifest.chunks.length, provider: fileProvider(manifest, fh, isVerified), active: true })
        current = { manifest, fh, isVerified, served, session: current?.manifest === manifest ? current.session : undefined }
      }, err => { logger.warn(`swarm: cannot serve ${tempPath}: ${(err as Error).message}`) })
    },
    chunkVerified (i) {
      current?.session?.markHave(i)
      current?.served.announce([i])
    },
    finished ({ manifest, out }) {
      const c = current
      current = undefined
      if (swarm == null || c == null) return
      c.session?.close().catch(() => {})
      // the temp file was renamed to `out`: the open handle reads the same file; serve it as complete
      const prev = finished.get(manifest.name)
      finished.set(manifest.name, { fh: c.fh, served: swarm.serve({ image: manifest.name, version: manifest.version, chunkCount: manifest.chunks.length, provider: fileProvider(manifest, c.fh, () => true), active: false }) })
      if (prev != null) { if (prev.served !== c.served) prev.served.close(); void prev.fh.close().catch(() => {}) }
      void out
    },
    stopped () {
      const c = current
      current = undefined
      if (c == null) return
      c.session?.close().catch(() => {})
      c.served.close()
      void c.fh.close().catch(() => {})
    }
  }

  /** Fetches `chunks` (given to us by the claim rule) from the origin: their missing blocks in one batch, whole chunks for what then fails. */
  async function fetchFromOrigin (ctx: SyncContext, chunks: number[], isVerified: (i: number) => boolean, options: AbortOptions): Promise<void> {
    const m = ctx.manifest
    const seen = new Set<bigint>()
    const blocks: number[] = []
    for (const ci of chunks) {
      const c = m.chunks[ci]
      const len = c.length / BLOCK_SIZE
      for (let k = 0; k < len; k++) {
        const b = c.firstBlock + k
        if (!ctx.isMissing(b)) continue
        const key = prefixKey(m.blockPrefixes, b)
        if (seen.has(key)) continue
        seen.add(key)
        blocks.push(b)
      }
    }
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
      const c = m.chunks[ci]
      const data = await client.bytes('GET', api.routes.chunk(m.name, m.version, chunkCid(c.digest).toString()), undefined, { signal: options.signal, maxBytes: c.length })
      if (!ctx.offerChunk(ci, data, 'origin')) throw new Error(`chunk ${ci} (${chunkCid(c.digest).toString()}) from the coordinator does not match the manifest`)
    }
  }

  function peersSource (manifest: Manifest, info: { fromVersion?: string }): BlockSource {
    return {
      name: 'peers',
      kind: 'peers',
      async fill (ctx, options) {
        await opening
        const s = swarm
        const c = current
        if (s == null || c == null || c.manifest !== manifest) return
        const image = manifest.name
        const version = manifest.version
        let capability: Uint8Array
        try {
          capability = (await client.capability({ image, version, peerId: s.peerId }, options)).capability
        } catch (err) {
          logger.warn(`swarm: no capability for ${image}@${version} (${(err as Error).message}); not fetching from peers`)
          return
        }
        rendezvous?.stop()
        const rv = createRendezvous({ swarm: s, register: client.registerPeer, listPeers: client.listPeers, logger }, { site: init.site, image, version })
        rendezvous = rv
        let peerAddrs: string[] = []
        try {
          peerAddrs = await rv.refresh(options)
        } catch (err) {
          logger.warn(`swarm: rendezvous with the coordinator failed: ${(err as Error).message}`)
        }
        // a delta pack pays only once per site: with peers it would be pulled whole by each. Agents
        // that start together register within moments: look once more, so all see the same list.
        if (info.fromVersion != null) {
          await sleep(LAN_PACK_WAIT_MS, undefined, { signal: options.signal })
          peerAddrs = await rv.refresh(options).catch(() => [])
        }
        if (info.fromVersion != null && peerAddrs.length === 0) {
          logger.info(`swarm: no peer of site ${init.site} on ${image}@${version}; using the origin's delta pack`)
          return
        }
        // peers the coordinator lists for this version may fetch from us after we are done (--linger)
        for (const a of peerAddrs) sessionPeers.add(a.slice(a.lastIndexOf('/p2p/') + 5))
        // An update with peers: one agent of the site (the lowest peer id listed) takes the delta
        // pack and serves what it applies; the others wait for it and claim origin chunks only if
        // it is not connected or makes no progress for LAN_LEADER_STALL_MS.
        let packLeader: string | undefined
        if (info.fromVersion != null) {
          packLeader = [s.peerId, ...peerAddrs.map(a => a.slice(a.lastIndexOf('/p2p/') + 5))].sort()[0]
          if (packLeader === s.peerId) {
            logger.info(`swarm: ${image}@${version}: this agent takes the delta pack for site ${init.site}`)
            return
          }
        }
        const session = s.createSession({
          image,
          version,
          manifest,
          capability,
          need: ctx.unverifiedChunks(),
          peers: peerAddrs,
          signal: options.signal,
          onChunk: async (i, bytes) => {
            if (!ctx.offerChunk(i, bytes, 'peers')) throw new Error(`chunk ${i} was refused`)
          },
          onEvent: (e) => {
            if (e.type === 'peer.banned') {
              logger.warn(`swarm: banned peer ${e.peerId}: chunk ${e.index}: ${e.reason}`)
              components.onBanned?.({ image, version, peerId: e.peerId, reason: e.reason })
            }
          }
        })
        c.session = session
        // claimed chunks that could not be verified: kept reserved (peers are not told we have
        // them), left to the sync's later phases
        const givenUp = new Set<number>()
        // claim rounds of about LAN_ORIGIN_BATCH_BYTES: a peer that joins late re-divides what is
        // not claimed yet, so what two agents both fetch is bounded by one round
        const total = manifest.chunks.reduce((s, ch) => s + ch.length, 0)
        const roundBytes = Math.min(LAN_ORIGIN_BATCH_BYTES, total / LAN_ORIGIN_MIN_ROUNDS)
        const batchChunks = Math.max(1, Math.floor(roundBytes * manifest.chunks.length / Math.max(1, total)))
        try {
          await session.start()
          let lastRemaining = session.remaining()
          let lastProgressAt = performance.now()
          while (session.remaining() > givenUp.size) {
            options.signal?.throwIfAborted()
            for (const id of session.peers()) sessionPeers.add(id)
            if (packLeader != null && session.peers().includes(packLeader)) {
              if (session.remaining() < lastRemaining) { lastRemaining = session.remaining(); lastProgressAt = performance.now() }
              if (performance.now() - lastProgressAt < LAN_LEADER_STALL_MS) {
                await session.waitForChange({ signal: options.signal, timeoutMs: LAN_WAIT_MS })
                await ctx.tick()
                continue
              }
            }
            const mine = session.originChunks(batchChunks)
            if (mine.length === 0) {
              await session.waitForChange({ signal: options.signal, timeoutMs: LAN_WAIT_MS })
              await ctx.tick()
              continue
            }
            try {
              await fetchFromOrigin(ctx, mine, c.isVerified, options)
            } catch (err) {
              session.release(mine.filter(i => !c.isVerified(i)))
              throw err
            }
            for (const i of mine) {
              if (c.isVerified(i)) session.markHave(i)
              else givenUp.add(i)
            }
            await ctx.tick()
          }
          for (const id of session.peers()) sessionPeers.add(id)
          const st = session.stats()
          logger.info(`swarm: ${image}@${version}: ${st.chunksFromPeers} chunks from ${Object.keys(st.byPeer).length} peers, ${st.chunksForOrigin} from the origin`)
        } finally {
          await session.close()
          if (c.session === session) c.session = undefined
        }
      }
    }
  }

  function openBlockStreams (): number {
    if (swarm == null) return 0
    let n = 0
    // only peers of our own sessions: a stranger (another coordinator's agent found by mDNS) must not keep us up
    for (const conn of swarm.libp2p.getConnections()) {
      if (!sessionPeers.has(conn.remotePeer.toString())) continue
      for (const st of conn.streams) if (st.protocol === BLOCKS_PROTOCOL) n++
    }
    return n
  }

  return {
    prepare,
    extraSources (manifest, info) {
      return enabled && swarm != null ? [peersSource(manifest, info)] : []
    },
    observer,
    async linger (ms, options = {}) {
      if (swarm == null || ms <= 0) return
      const until = performance.now() + ms
      let idleSince = performance.now()
      while (performance.now() < until && options.signal?.aborted !== true) {
        if (openBlockStreams() > 0) idleSince = performance.now()
        else if (performance.now() - idleSince >= LAN_IDLE_MS) return
        await sleep(100, undefined, { signal: options.signal }).catch(() => {})
      }
    },
    get peerId () { return swarm?.peerId },
    servedBytes: () => swarm == null ? servedBefore : (servedBefore ?? 0) + swarm.stats().bytesServed,
    async stop () {
      observer.stopped?.()
      await stopSwarm()
    }
  }
}
