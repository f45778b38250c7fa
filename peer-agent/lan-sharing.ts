/**
 * LAN sharing for the agent (docs/ARCHITECTURE.md "Swarm"): one swarm node per
 * agent, started when policy allows `lanSharing`; each sync serves its temp
 * file's verified chunks to peers as they verify, and fetches from peers as the
 * "peers" source, taking from the origin only the chunks the claim rule gives
 * it (session.originChunks), so agents that start together pull each byte over
 * the WAN about once. The signed manifest is shared the same way: the agents
 * of a site ask each other for it and one of them (the lowest peer id of
 * those wanting it) downloads it from the origin.
 */
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BLOCK_SIZE, BLOCKS_PROTOCOL } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { api } from '../protocol/index.ts'
import { chunkCid } from '../protocol/block-id.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { DATA_FILES, LAN_IDLE_MS, LAN_MANIFEST_FETCH_WAIT_MS, LAN_MANIFEST_LEADER_WAIT_MS, LAN_MANIFEST_POLL_MS, LAN_ORIGIN_BATCH_BYTES, LAN_PACK_LINGER_MS, LAN_ORIGIN_MIN_ROUNDS, LAN_LEADER_STALL_MS, LAN_PACK_WAIT_MS, LAN_WAIT_MS } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { isUnavailableAtOrigin } from './errors.ts'
import { openListedManifest, type ImageSyncComponents, type SyncObserver } from './image-sync.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { prefixKey } from './local-sources.ts'
import { createBlockBatchSource } from './origin-sources.ts'
import { plural } from './progress-reporter.ts'
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
  /** Multiaddrs to listen on (--listen); default the swarm's DEFAULT_LISTEN. */ listen?: string[]
  /** mDNS discovery (--no-mdns turns it off). */ mdns?: boolean
  /** ImageSyncInit.transfer: in background, LAN uploads yield too (default foreground). */ transfer?: 'background' | 'foreground' | 'policy'
}

/** LAN sharing of one agent. */
export interface LanSharing {
  /** Reads the policy: starts the node (or applies new caps) when lanSharing is on, stops it when off. */
  prepare: (options?: AbortOptions) => Promise<boolean>
  /** image-sync's extraSources. */
  extraSources: (manifest: Manifest, info: { fromVersion?: string }) => BlockSource[]
  /** image-sync's manifestSource: the signed manifest from a peer of the site, or from the origin when this agent is the one to download it. */
  manifestSource: NonNullable<ImageSyncComponents['manifestSource']>
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

/** This agent's place in the swarm of one version: its capability and the site's rendezvous. */
interface Joined {
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

const peerIdOf = (addr: string): string => addr.slice(addr.lastIndexOf('/p2p/') + 5)

/** A capability this close to expiry (seconds) is asked for again. */
const CAPABILITY_RENEW_SECONDS = 60

/** Creates LAN sharing; nothing runs until prepare() finds lanSharing in the policy. */
export function createLanSharing (components: LanSharingComponents, init: LanSharingInit): LanSharing {
  const { client, logger } = components
  let swarm: Swarm | undefined
  let enabled = false
  let joined: Joined | undefined
  let current: Current | undefined
  /** The temp file's serving set-up (started() cannot await it). */
  let opening: Promise<void> = Promise.resolve()
  /**
   * When this agent took the site's delta pack: the peers listed for the version, which wait for
   * its chunks; --linger waits (at most LAN_PACK_LINGER_MS) until each has opened a block stream.
   */
  let packWaiters: Set<string> | undefined
  /** Peers that exchanged chunks of a version with us in this process's sessions (what --linger waits for). */
  const sessionPeers = new Set<string>()
  /** Finished images still served (daemon: until a newer version replaces them). */
  const finished = new Map<string, { fh: FileHandle, served: ServedVersion }>()

  /** Bytes served by nodes already stopped (a policy change can stop and restart the node). */
  let servedBefore: number | undefined

  async function stopSwarm (): Promise<void> {
    if (swarm != null) servedBefore = (servedBefore ?? 0) + swarm.stats().bytesServed
    joined?.rendezvous.stop()
    joined = undefined
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
    const transfer = init.transfer === 'policy' ? me.policy.transfer ?? 'background' : init.transfer
    const caps = { uploadBps: me.policy.lanUploadBps, maxPeers: me.policy.maxPeers, backgroundUploads: transfer === 'background' }
    if (swarm != null) { swarm.setCaps(caps); return true }
    const privateKey = await loadOrCreatePeerKey(join(init.dataDir, DATA_FILES.swarmKey))
    swarm = await createSwarm({ logger }, { coordinatorKey: await components.coordinatorKey(options), privateKey, listen: init.listen, mdns: init.mdns ?? true, ...caps })
    logger.info(`swarm: peer ${swarm.peerId} listening on ${swarm.getMultiaddrs().join(' ')}`)
    return true
  }

  const observer: SyncObserver = {
    started ({ manifest, envelope, tempPath, openTemp, isVerified }) {
      if (!enabled || swarm == null) return
      const s = swarm
      s.holdManifest(manifest.name, manifest.version, envelope)
      // opened again only if it still is our file (not a symlink someone put in its place)
      opening = openTemp().then(fh => {
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
      let data: Uint8Array
      try {
        data = await client.bytes('GET', api.routes.chunk(m.name, m.version, chunkCid(c.digest).toString()), undefined, { signal: options.signal, maxBytes: c.length })
      } catch (err) {
        // the coordinator's copy is damaged or gone: a peer may have it; the sync asks again at its end
        if (!isUnavailableAtOrigin(err)) throw err
        logger.warn(`chunk ${ci} (${chunkCid(c.digest).toString()}): the coordinator cannot serve it (${(err as Error).message})`)
        continue
      }
      if (!ctx.offerChunk(ci, data, 'origin')) throw new Error(`chunk ${ci} (${chunkCid(c.digest).toString()}) from the coordinator does not match the manifest`)
    }
  }

  /**
   * Joins the swarm of image@version: a capability for it (POST /v1/capabilities) and the site's
   * rendezvous, kept for the whole sync (manifest, then blocks). Undefined when the coordinator
   * gives no capability (the policy does not share this image with peers).
   */
  async function joinVersion (s: Swarm, image: string, version: string, options: AbortOptions): Promise<Joined | undefined> {
    const now = Date.now() / 1000
    if (joined != null && joined.swarm === s && joined.image === image && joined.version === version && joined.expires - now > CAPABILITY_RENEW_SECONDS) return joined
    let cap: { capability: Uint8Array, expires: number }
    try {
      cap = await client.capability({ image, version, peerId: s.peerId }, options)
    } catch (err) {
      logger.warn(`swarm: no capability for ${image}@${version} (${(err as Error).message}); not fetching from peers`)
      return undefined
    }
    if (joined != null && joined.swarm === s && joined.image === image && joined.version === version) {
      joined.capability = cap.capability
      joined.expires = cap.expires
      return joined
    }
    joined?.rendezvous.stop()
    joined = {
      image,
      version,
      swarm: s,
      capability: cap.capability,
      expires: cap.expires,
      rendezvous: createRendezvous({ swarm: s, register: client.registerPeer, listPeers: client.listPeers, logger }, { site: init.site, image, version }),
      peerAddrs: []
    }
    return joined
  }

  const manifestSource: LanSharing['manifestSource'] = async (info, fromOrigin, options) => {
    if (!enabled || swarm == null) return await fromOrigin(options)
    const s: Swarm = swarm
    const { image, version } = info
    const j = await joinVersion(s, image, version, options)
    if (j == null) return await fromOrigin(options)
    try {
      j.peerAddrs = await j.rendezvous.refresh(options)
    } catch (err) {
      logger.warn(`swarm: rendezvous with the coordinator failed: ${(err as Error).message}`)
    }
    const key = await components.coordinatorKey(options)
    async function download (): Promise<Uint8Array> {
      const done = s.fetchingManifest(image, version)
      try {
        const envelope = await fromOrigin(options)
        await openListedManifest(envelope, key, info) // before peers are served it; image-sync checks it again
        s.holdManifest(image, version, envelope)
        return envelope
      } finally {
        done()
      }
    }
    const bad = new Set<string>()
    let refreshed = false
    /** Since when no peer held or fetched the manifest while a lower peer id than ours wanted it. */
    let leaderWaitSince: number | undefined
    /** Since when a peer says it is downloading the manifest. */
    let fetchingSince: number | undefined
    for (;;) {
      options.signal?.throwIfAborted()
      const ids = [...new Set(j.peerAddrs.map(peerIdOf))].filter(id => id !== s.peerId && !bad.has(id))
      const answers = await Promise.all(ids.map(async id => {
        try {
          return { id, answer: await s.askManifest(id, j.capability, options) }
        } catch (err) {
          logger.info(`swarm: cannot ask ${id} for the manifest of ${image}@${version}: ${(err as Error).message}`)
          return { id, answer: undefined }
        }
      }))
      for (const { id, answer } of answers) {
        if (answer?.status !== 'manifest') continue
        try {
          await openListedManifest(answer.envelope, key, info) // a bad peer is skipped and reported
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
      const now = performance.now()
      if (answers.some(a => a.answer?.status === 'fetching')) {
        leaderWaitSince = undefined
        fetchingSince ??= now
        if (now - fetchingSince > LAN_MANIFEST_FETCH_WAIT_MS) {
          logger.warn(`swarm: no peer delivered the manifest of ${image}@${version} in ${LAN_MANIFEST_FETCH_WAIT_MS} ms; taking it from the origin`)
          return await download()
        }
      } else {
        fetchingSince = undefined
        const wanting = answers.filter(a => a.answer?.status === 'not-held').map(a => a.id)
        if ([s.peerId, ...wanting].sort()[0] === s.peerId) {
          // agents that start together may not all be registered yet: look once more before downloading
          if (!refreshed) {
            refreshed = true
            const before = new Set(j.peerAddrs.map(peerIdOf))
            j.peerAddrs = await j.rendezvous.refresh(options).catch(() => j.peerAddrs)
            if (j.peerAddrs.some(a => !before.has(peerIdOf(a)))) continue
          }
          logger.info(`swarm: ${image}@${version}: this agent downloads the manifest for site ${init.site}`)
          return await download()
        }
        leaderWaitSince ??= now
        if (now - leaderWaitSince > LAN_MANIFEST_LEADER_WAIT_MS) {
          logger.info(`swarm: ${image}@${version}: no peer of site ${init.site} fetched the manifest in ${LAN_MANIFEST_LEADER_WAIT_MS} ms; taking it from the origin`)
          return await download()
        }
      }
      await sleep(LAN_MANIFEST_POLL_MS, undefined, { signal: options.signal })
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
        const j = await joinVersion(s, image, version, options)
        if (j == null) return
        const { capability } = j
        let peerAddrs = j.peerAddrs
        try {
          peerAddrs = j.peerAddrs = await j.rendezvous.refresh(options)
        } catch (err) {
          logger.warn(`swarm: rendezvous with the coordinator failed: ${(err as Error).message}`)
        }
        // a delta pack pays only once per site: with peers it would be pulled whole by each. Agents
        // that start together register within moments: look once more, so all see the same list.
        if (info.fromVersion != null) {
          await sleep(LAN_PACK_WAIT_MS, undefined, { signal: options.signal })
          peerAddrs = j.peerAddrs = await j.rendezvous.refresh(options).catch(() => [])
        }
        if (info.fromVersion != null && peerAddrs.length === 0) {
          logger.info(`swarm: no peer of site ${init.site} on ${image}@${version}; using the origin's delta pack`)
          return
        }
        // peers the coordinator lists for this version may fetch from us after we are done (--linger)
        for (const a of peerAddrs) sessionPeers.add(peerIdOf(a))
        // An update with peers: one agent of the site (the lowest peer id listed) takes the delta
        // pack and serves what it applies; the others wait for it and claim origin chunks only if
        // it is not connected or makes no progress for LAN_LEADER_STALL_MS.
        let packLeader: string | undefined
        if (info.fromVersion != null) {
          packLeader = [s.peerId, ...peerAddrs.map(peerIdOf)].sort()[0]
          if (packLeader === s.peerId) {
            logger.info(`swarm: ${image}@${version}: this agent takes the delta pack for site ${init.site}`)
            packWaiters = new Set(peerAddrs.map(peerIdOf))
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
            // the session verified it against this manifest (length and full digest) before handing it over
            if (!ctx.offerChunk(i, bytes, 'peers', true)) throw new Error(`chunk ${i} was refused`)
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
          logger.info(`swarm: ${image}@${version}: ${plural(st.chunksFromPeers, 'chunk')} from ${plural(Object.keys(st.byPeer).length, 'peer')}, ${st.chunksForOrigin} from the origin`)
        } finally {
          await session.close()
          if (c.session === session) c.session = undefined
        }
      }
    }
  }

  /** Peers of our sessions with a block stream open with us now. */
  function blockStreamPeers (): Set<string> {
    const out = new Set<string>()
    if (swarm == null) return out
    // only peers of our own sessions: a stranger (another coordinator's agent found by mDNS) must not keep us up
    for (const conn of swarm.libp2p.getConnections()) {
      const id = conn.remotePeer.toString()
      if (!sessionPeers.has(id)) continue
      if (conn.streams.some(st => st.protocol === BLOCKS_PROTOCOL)) out.add(id)
    }
    return out
  }

  return {
    prepare,
    extraSources (manifest, info) {
      return enabled && swarm != null ? [peersSource(manifest, info)] : []
    },
    manifestSource,
    observer,
    async linger (ms, options = {}) {
      const waiters = packWaiters ?? new Set<string>()
      packWaiters = undefined
      if (swarm == null || ms <= 0) return
      const start = performance.now()
      const until = start + ms
      let idleSince = start
      while (performance.now() < until && options.signal?.aborted !== true) {
        const now = performance.now()
        const open = blockStreamPeers()
        for (const id of open) waiters.delete(id)
        // the site's delta-pack agent: its peers wait for its chunks (they may still be starting)
        const awaited = waiters.size > 0 && now - start < LAN_PACK_LINGER_MS
        if (open.size > 0 || awaited) idleSince = now
        else if (now - idleSince >= LAN_IDLE_MS) return
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
