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
import { BLOCKS_PROTOCOLS } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import type { AbortOptions } from '../utils/interface.ts'
import { readFull } from '../utils/read-full.ts'
import type { BlockSource } from './block-source.ts'
import { DATA_FILES, LAN_IDLE_MS, LAN_PACK_LINGER_MS } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import type { ImageSyncComponents, SyncObserver } from './image-sync.ts'
import { PartialFileError } from './errors.ts'
import type { AgentLogger } from './interface.ts'
import { createVersionJoiner, refreshPeers } from './lan-join.ts'
import { fetchSiteManifest } from './lan-manifest.ts'
import { createPeersSource, type PeersSourceComponents, type ServedSync } from './lan-peers-source.ts'
import { createSwarm, loadOrCreatePeerKey, type ChunkProvider, type ServedVersion, type Swarm } from './swarm/index.ts'

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
  /** ImageSyncInit.transfer: in background, LAN uploads yield too (default foreground). */
  transfer?: 'background' | 'foreground' | 'policy'
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
export function fileProvider (manifest: Manifest, fh: FileHandle, has: (i: number) => boolean): ChunkProvider {
  return {
    has,
    async read (i) {
      const chunk = manifest.chunks[i]
      // not zero-filled (every byte is read over, or the chunk is refused): ~100 MB of chunks an agent serves in a trim
      const buf = Buffer.allocUnsafe(chunk.length)
      const got = await readFull(fh, buf, chunk.offset)
      if (got !== chunk.length) throw new PartialFileError(`chunk ${i} ends past the end of the file (${got} of ${chunk.length} bytes): cannot serve it`)
      return buf
    }
  }
}

/** Serves `fh` as `manifest`'s version on `node`: ACTIVE while it is the temp file of a sync. */
function serveFile (node: Swarm, manifest: Manifest, fh: FileHandle, has: (i: number) => boolean, active: boolean): ServedVersion {
  return node.serve({ image: manifest.name, version: manifest.version, chunkCount: manifest.chunks.length, provider: fileProvider(manifest, fh, has), active })
}

/** The sync being served, and the temp file it is served from. */
interface Current extends ServedSync {
  fh: FileHandle
}

/** Creates LAN sharing; nothing runs until prepare() finds lanSharing in the policy. */
export function createLanSharing (components: LanSharingComponents, init: LanSharingInit): LanSharing {
  const { client, logger } = components
  let swarm: Swarm | undefined
  let enabled = false
  const joiner = createVersionJoiner({ client, logger }, { site: init.site })
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
    await joiner.leave() // first: the site's agents stop dialling us
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
    const coordinatorKey = await components.coordinatorKey(options)
    swarm = await createSwarm({ logger }, { coordinatorKey, privateKey, listen: init.listen, mdns: init.mdns ?? true, ...caps })
    logger.info(`swarm: peer ${swarm.peerId} listening on ${swarm.getMultiaddrs().join(' ')}`)
    return true
  }

  const observer: SyncObserver = {
    started ({ manifest, envelope, tempPath, openTemp, isVerified }) {
      if (!enabled || swarm == null) return
      const node = swarm
      node.holdManifest(manifest.name, manifest.version, envelope)
      // opened again only if it still is our file (not a symlink someone put in its place)
      opening = openTemp().then(fh => {
        if (swarm !== node) { void fh.close(); return }
        const served = serveFile(node, manifest, fh, isVerified, true)
        current = { manifest, fh, isVerified, served, session: current?.manifest === manifest ? current.session : undefined }
      }, err => { logger.warn(`swarm: cannot serve ${tempPath}: ${(err as Error).message}`) })
    },
    chunkVerified (i) {
      current?.session?.markHave(i)
      current?.served.announce([i])
    },
    finished ({ manifest, out }) {
      const done = current
      current = undefined
      if (swarm == null || done == null) return
      done.session?.close().catch(() => {})
      // the temp file was renamed to `out`: the open handle reads the same file; serve it as complete
      const prev = finished.get(manifest.name)
      finished.set(manifest.name, { fh: done.fh, served: serveFile(swarm, manifest, done.fh, () => true, false) })
      if (prev != null) { if (prev.served !== done.served) prev.served.close(); void prev.fh.close().catch(() => {}) }
      void out
    },
    stopped () {
      const stopped = current
      current = undefined
      if (stopped == null) return
      stopped.session?.close().catch(() => {})
      stopped.served.close()
      void stopped.fh.close().catch(() => {})
    }
  }

  const manifestSource: LanSharing['manifestSource'] = async (info, fromOrigin, options) => {
    if (!enabled || swarm == null) return await fromOrigin(options)
    const node: Swarm = swarm
    const joined = await joiner.join(node, info.image, info.version, options)
    if (joined == null) return await fromOrigin(options)
    await refreshPeers(joined, logger, options)
    const siteManifest = { logger, coordinatorKey: await components.coordinatorKey(options), onBanned: components.onBanned }
    return await fetchSiteManifest(siteManifest, { swarm: node, joined, site: init.site, info, fromOrigin }, options)
  }

  const peersSource: PeersSourceComponents = {
    client,
    logger,
    onBanned: components.onBanned,
    async serving () {
      await opening
      return swarm != null && current != null ? { swarm, sync: current } : undefined
    },
    join: joiner.join,
    sessionPeers,
    tookPack: (waiters) => { packWaiters = waiters }
  }

  /** Peers of our sessions with a block stream open with us now. */
  function blockStreamPeers (): Set<string> {
    const out = new Set<string>()
    if (swarm == null) return out
    // only peers of our own sessions: a stranger (another coordinator's agent found by mDNS) must not keep us up
    for (const conn of swarm.libp2p.getConnections()) {
      const id = conn.remotePeer.toString()
      if (!sessionPeers.has(id)) continue
      if (conn.streams.some(st => BLOCKS_PROTOCOLS.includes(st.protocol ?? ''))) out.add(id)
    }
    return out
  }

  return {
    prepare,
    extraSources (manifest, info) {
      return enabled && swarm != null ? [createPeersSource(peersSource, { manifest, fromVersion: info.fromVersion, site: init.site })] : []
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
