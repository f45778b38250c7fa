/**
 * One agent: a coordinator client, the host index, image sync and the events
 * queue wired together over one data dir. `agent sync` runs one `syncImage`;
 * the daemon runs it for every image its policy assigns.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { hostname, platform } from 'node:os'
import { join, resolve } from 'node:path'
import { writeFileAtomic } from '../utils/atomic-write.ts'
import { api } from '../protocol/index.ts'
import { DATA_FILES, DEFAULT_SITE, PRIVATE_FILE_MODE } from './constants.ts'
import { mkdirPrivate } from './private-files.ts'
import { createCoordinatorClient, type AgentAuth, type CoordinatorClient, type RetryOptions } from './coordinator-client.ts'
import { createEventQueue, type EventQueue } from './event-queue.ts'
import type { HostIndex } from './host-index.ts'
import { createImageSync, type ImageSync, type ImageSyncInit, type SyncProgress, type SyncSummary } from './image-sync.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import type { LanSharing } from './lan-sharing.ts'
import { CoordinatorUnreachableError } from './errors.ts'
import { checkOutput } from './output-guard.ts'

/** Options of an agent. */
export interface AgentInit {
  /** One coordinator URL, or several serving the same key and images (failover). */
  coordinator: string | readonly string[]
  auth: AgentAuth
  dataDir: string
  /** Folders to index; undefined = the policy's list for this OS; [] = no host index. */
  indexFolders?: string[]
  /** Origin bytes per second (0 = none); the policy's cap applies too. */
  wanLimit?: number
  /** WAN transfer mode (image-sync.ts ImageSyncInit.transfer); default foreground. */
  transfer?: ImageSyncInit['transfer']
  site?: string
  /** Coordinator public key (base64), instead of pinning on first contact. */
  publicKey?: string
  retry?: RetryOptions
  /** Retries for sending events (kept short: undelivered events just wait). */
  eventRetry?: RetryOptions
  /** LAN sharing (the swarm), used when the policy's lanSharing is on; `enabled: false` (--no-lan) turns it off. */
  lan?: { enabled?: boolean, listen?: string[], mdns?: boolean }
}

/** Dependencies of an agent. */
export interface AgentComponents {
  logger: AgentLogger
  onProgress?: (p: SyncProgress) => void
}

/** One sync request of the agent. */
export interface AgentSyncRequest extends AbortOptions {
  image: string
  version?: string
  out: string
  /** Command run (through the shell) after a new version is in place. */
  onUpdate?: string
  /** Replace `out` even when it is an existing file this agent did not install. */
  force?: boolean
  /** Leave the host index's refresh after the image to `refreshDeferredIndex` (image-sync.ts SyncRequest). */
  deferIndexRefresh?: boolean
}

/** The agent. */
export interface Agent {
  readonly client: CoordinatorClient
  readonly events: EventQueue
  readonly agentId: string
  /** Syncs one image, records and sends events, runs the hook. */
  syncImage: (req: AgentSyncRequest) => Promise<SyncSummary>
  /** The host index over the given (or policy's) folders, opened. */
  hostIndex: (options?: AbortOptions) => Promise<HostIndex | undefined>
  /** Runs the host index refresh a sync with `deferIndexRefresh` left, if any. */
  refreshDeferredIndex: (options?: AbortOptions) => Promise<void>
  /** LAN sharing, unless turned off. */
  readonly lan: LanSharing | undefined
  close: () => Promise<void>
}

const OS_FAMILY: Record<string, 'linux' | 'windows' | 'macos'> = { linux: 'linux', win32: 'windows', darwin: 'macos' }

/** A stable id for this agent, kept in the data dir. */
export async function agentIdOf (dataDir: string): Promise<string> {
  const path = join(dataDir, DATA_FILES.agentId)
  try {
    const id = (await readFile(path, 'utf8')).trim()
    if (id !== '') return id
  } catch {}
  const id = `${hostname().replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 60)}-${randomUUID().slice(0, 8)}`
  await mkdirPrivate(dataDir)
  await writeFileAtomic(path, id + '\n', { mode: PRIVATE_FILE_MODE }) // a crash never leaves a torn id
  return id
}

/** Runs the on-update hook with TRIMSWARM_IMAGE, TRIMSWARM_VERSION, TRIMSWARM_PATH set; resolves with its exit code. */
export async function runHook (command: string, env: { image: string, version: string, path: string }, logger: AgentLogger): Promise<number> {
  return await new Promise((resolvePromise) => {
    const child = spawn(command, {
      shell: true,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, TRIMSWARM_IMAGE: env.image, TRIMSWARM_VERSION: env.version, TRIMSWARM_PATH: env.path }
    })
    child.on('error', (err) => { logger.warn(`on-update hook failed to start: ${err.message}`); resolvePromise(127) })
    child.on('exit', (code, sig) => {
      const rc = code ?? 128
      if (rc !== 0) logger.warn(`on-update hook exited with ${code ?? sig}`)
      resolvePromise(rc)
    })
  })
}

/** Creates an agent over a data dir. */
export async function createAgent (components: AgentComponents, init: AgentInit): Promise<Agent> {
  const { logger } = components
  const dataDir = resolve(init.dataDir)
  await mkdirPrivate(dataDir)
  const agentId = await agentIdOf(dataDir)
  const client = createCoordinatorClient({ logger }, { url: init.coordinator, auth: init.auth, retry: init.retry })
  const eventClient = createCoordinatorClient({ logger }, { url: init.coordinator, auth: init.auth, retry: init.eventRetry ?? { attempts: 2, baseMs: 250 } })
  const events = createEventQueue({ client: eventClient, logger }, { path: join(dataDir, DATA_FILES.events), agent: agentId, site: init.site ?? DEFAULT_SITE })
  let index: HostIndex | undefined
  let indexFolders: string[] | undefined

  async function hostIndex (options: AbortOptions = {}): Promise<HostIndex | undefined> {
    if (index != null) return index
    let folders = init.indexFolders
    if (folders == null) {
      const me = await client.me(options)
      folders = me.policy.indexFolders[OS_FAMILY[platform()] ?? 'linux']
    }
    indexFolders = folders
    if (folders.length === 0) return undefined
    // loaded only when folders are indexed (its database library is not needed otherwise)
    const { createHostIndex } = await import('./host-index.ts')
    index = createHostIndex({ logger }, { dbPath: join(dataDir, DATA_FILES.hostIndex), folders })
    await index.open()
    return index
  }

  const site = init.site ?? DEFAULT_SITE
  // libp2p and the swarm (600 of the 800 modules an `agent sync` loaded) are loaded only when LAN sharing runs
  const lan = init.lan?.enabled === false
    ? undefined
    : (await import('./lan-sharing.ts')).createLanSharing({
      client,
      logger,
      coordinatorKey: async (options) => await (await syncFor()).publicKey(options),
      onBanned: (ban) => {
        const { image, version } = ban
        const event = { type: 'peer.banned' as const, image, version, peerId: ban.peerId.slice(0, 128), error: ban.reason.slice(0, 2000) }
        events.record(event).catch(() => {})
      }
    }, { dataDir, site, listen: init.lan?.listen, mdns: init.lan?.mdns, transfer: init.transfer })

  const imageSyncs = new Map<string, ImageSync>()
  async function syncFor (): Promise<ImageSync> {
    const idx = await hostIndex()
    const key = 'default'
    let imageSync = imageSyncs.get(key)
    if (imageSync == null) {
      const peers = { extraSources: lan?.extraSources, manifestSource: lan?.manifestSource, observer: lan?.observer }
      const options = { dataDir, publicKey: init.publicKey, wanLimit: init.wanLimit, transfer: init.transfer }
      imageSync = createImageSync({ client, logger, hostIndex: idx, onProgress: components.onProgress, ...peers }, options)
      imageSyncs.set(key, imageSync)
    }
    return imageSync
  }

  /** The swarm node's peer id and servedBytes for an event, only when LAN sharing ran (servedBytes is cumulative for this process's swarm node). */
  function served (): { servedBytes?: number, peerId?: string } {
    const servedBytes = lan?.servedBytes()
    const id = lan?.peerId
    return { ...(servedBytes == null ? {} : { servedBytes }), ...(id == null ? {} : { peerId: id.slice(0, 128) }) }
  }

  return {
    client,
    events,
    agentId,
    hostIndex,
    lan,
    async syncImage (req) {
      const started = performance.now()
      const base = { image: req.image, version: req.version ?? 'latest' }
      let summary: SyncSummary
      try {
        await checkOutput(dataDir, req.out, { force: req.force })
        const imageSync = await syncFor()
        await events.record({ type: 'sync.started', ...base, version: safeVersion(base.version) })
        if (lan != null) {
          try {
            await lan.prepare({ signal: req.signal })
          } catch (err) {
            // an unreachable coordinator ends the sync too: one message, not a warning first
            if (req.signal?.aborted === true || err instanceof CoordinatorUnreachableError) throw err
            logger.warn(`swarm: LAN sharing unavailable (${(err as Error).message}); syncing from the origin`)
          }
        }
        summary = await imageSync.sync({ image: req.image, version: req.version, out: req.out, deferIndexRefresh: req.deferIndexRefresh, signal: req.signal })
      } catch (err) {
        await events.record({
          type: 'sync.failed',
          image: req.image,
          version: safeVersion(base.version),
          seconds: (performance.now() - started) / 1000,
          error: String((err as Error).message ?? err).slice(0, 2000),
          ...served()
        }).catch(() => {})
        await events.flush().catch(() => 0)
        throw err
      }
      if (!summary.upToDate) {
        await events.record({
          type: 'sync.completed',
          image: summary.image,
          version: summary.version,
          fromVersion: summary.fromVersion,
          bytes: summary.bytes,
          totalBytes: summary.nonZeroBytes,
          seconds: summary.seconds,
          ...served()
        })
      }
      await events.flush().catch(() => 0)
      if (!summary.upToDate && req.onUpdate != null && req.onUpdate !== '') {
        await runHook(req.onUpdate, { image: summary.image, version: summary.version, path: summary.out }, logger)
      }
      void indexFolders
      return summary
    },
    async refreshDeferredIndex (options) {
      for (const imageSync of imageSyncs.values()) await imageSync.refreshDeferredIndex(options)
    },
    async close () {
      await lan?.stop()
      await index?.close()
      index = undefined
    }
  }
}

/** Versions in events must be names; "latest" stands for a version not known yet. */
function safeVersion (v: string): string {
  try {
    return api.name.parse(v)
  } catch {
    return 'latest'
  }
}
