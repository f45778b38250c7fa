/**
 * Brings an output file to exactly one image version (docs/ARCHITECTURE.md "Sync"):
 * the driver. It verifies the signed manifest against the pinned coordinator key
 * before anything is written (sync-target.ts), opens the partial file beside the
 * output (partial-file.ts) and runs the phases in order, each a function below:
 * local sources (partial file, older version, host index), peers, the delta pack,
 * origin block batches, whole chunks, then the install. What is missing and what
 * verified is the ledger's (sync-ledger.ts); offered bytes are checked and written
 * by the sync context (sync-context.ts). Verified chunks are checkpointed (partial
 * file fsync, then a bitmap renamed into place) so a restart after kill -9
 * re-fetches nothing verified; when every chunk verifies the partial file is
 * fsynced and renamed over the output.
 */
import { closeSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { api } from '../protocol/index.ts'
import { chunkCid } from '../protocol/block-id.ts'
import type { Manifest } from '../protocol/manifest.ts'
import type { BlockSource } from './block-source.ts'
import { CHECKPOINT_INTERVAL_MS } from './constants.ts'
import { mkdirPrivate } from './private-files.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { partialPathOf } from './output-guard.ts'
import { ChunkUnavailableError, DiskFullError, isDiskFull, SyncIncompleteError } from './errors.ts'
import { isInstalledFile, openOutputForReading, openPartialImage, reopenOurs, type PartialImage } from './partial-file.ts'
import type { HostIndex } from './host-index.ts'
import type { AbortOptions, AgentLogger, SyncObserver, SyncProgress, SyncSummary } from './interface.ts'
import { createResumeSource, HOST_INDEX_SOURCE, planHostReads, refreshHostIndex, refreshHostIndexAfter, type HostReadPlan } from './local-sources.ts'
import { readHostBeside } from './local-pending.ts'
import { createSelfSeedSource } from './self-seed-source.ts'
import { createBlockBatchSource, fetchChunkFromOrigin } from './origin-sources.ts'
import { createDeltaPackSource, type DeltaPackSource } from './delta-pack-source.ts'
import { createCoordinatorPacer } from './background-pacer.ts'
import { stricterRate } from './rate-limiter.ts'
import { createSyncLedger, nonZeroBytesOf, type SyncLedger } from './sync-ledger.ts'
import { createSyncContext, type DrivenSyncContext } from './sync-context.ts'
import {
  baseSummary, dropPartialRecords, imageRecordsOf, pruneRecords, readJson, recordInstalled, writeRecord, type Checkpoint, type ImageRecords, type InstalledState
} from './sync-records.ts'
import { createKeyPin, installedManifest, resolveTarget, type SyncTarget } from './sync-target.ts'

export { openListedManifest } from './sync-target.ts'
export type { SyncObserver, SyncProgress, SyncStarted, SyncSummary } from './interface.ts'

/** Dependencies of image sync. */
export interface ImageSyncComponents {
  client: CoordinatorClient
  logger: AgentLogger
  /** The host index (Trim Transfer), when folders are indexed. */
  hostIndex?: HostIndex
  /** Extra sources tried after local ones and before the origin (LAN peers); `fromVersion` names the older version a delta pack could start from. */
  extraSources?: (manifest: Manifest, info: { fromVersion?: string }) => BlockSource[]
  onProgress?: (p: SyncProgress) => void
  observer?: SyncObserver
  /**
   * Where the signed manifest of `info` comes from when none is held locally
   * (LAN sharing: a peer of the site, or `fromOrigin` for the one agent of the
   * site that downloads it); default `fromOrigin`. Whatever it returns is
   * verified here against the pinned key and `info.manifestCid`.
   */
  manifestSource?: (info: api.VersionInfo, fromOrigin: (options: AbortOptions) => Promise<Uint8Array>, options: AbortOptions) => Promise<Uint8Array>
}

/** Options of image sync. */
export interface ImageSyncInit {
  /** The agent's data dir (pinned key, manifests, checkpoints, packs). */
  dataDir: string
  /** A configured coordinator key (raw 32 bytes, base64); otherwise pinned from GET /v1/key on first contact. */
  publicKey?: string
  /** --wan-limit in bytes per second (0 = none); the policy's cap applies too, whichever is stricter. */
  wanLimit?: number
  /**
   * How origin bytes cross the WAN: `foreground` (default) at full speed,
   * `background` paced to yield to other traffic (background-pacer.ts), or
   * `policy`: the policy's transfer field (background when it names none).
   */
  transfer?: api.TransferMode | 'policy'
  checkpointIntervalMs?: number
  /** Refresh the host index (default true): first if no refresh of it completed, else once the image is in place. */
  refreshIndex?: boolean
  /** Test hook: called after each checkpoint. */
  onCheckpoint?: (verifiedChunks: number) => void
}

/** One sync request. */
export interface SyncRequest extends AbortOptions {
  image: string
  /** Version to install; latest allowed by policy when absent. */
  version?: string
  out: string
  /**
   * Leave the host index's refresh after the image (the refresh of a ready index) to `refreshDeferredIndex`:
   * `agent sync` serves its LAN peers first (--linger), so a done agent's walk of the folders takes no CPU
   * from peers still syncing, nor delays the chunks it serves them.
   */
  deferIndexRefresh?: boolean
}

/** Brings files to image versions. */
export interface ImageSync {
  sync: (req: SyncRequest) => Promise<SyncSummary>
  /** Runs the host index refresh a sync with `deferIndexRefresh` left (nothing when none is left). */
  refreshDeferredIndex: (options?: AbortOptions) => Promise<void>
  /** The coordinator key, pinned on first use. */
  publicKey: (options?: AbortOptions) => Promise<CryptoKey>
}


/** One sync in progress: what the phases share. */
interface SyncJob {
  req: SyncRequest
  out: string
  records: ImageRecords
  target: SyncTarget
  /** The image's installed record (whichever output): its manifest is replaced by this version's. */
  installed?: InstalledState
  /** The installed record when it is for this output. */
  installedHere?: InstalledState
  /** The installed version's manifest (self-seed and delta pack), when usable. */
  oldManifest?: Manifest
  partial: PartialImage
  ledger: SyncLedger
  ctx: DrivenSyncContext
  deltaPack?: DeltaPackSource
  started: number
  originAtStart: number
  /** A ready host index the lookups used as it was: refreshed once the image is in place. */
  refreshIndexAfter?: HostIndex
}

/** Creates image sync over a coordinator client and the agent's data dir. */
export function createImageSync (components: ImageSyncComponents, init: ImageSyncInit): ImageSync {
  const { client, logger } = components
  const dataDir = resolve(init.dataDir)
  const checkpointIntervalMs = init.checkpointIntervalMs ?? CHECKPOINT_INTERVAL_MS
  const publicKey = createKeyPin({ client, logger }, { dataDir, configured: init.publicKey })
  /** The ready host index a sync with `deferIndexRefresh` left to refresh. */
  let deferredRefresh: HostIndex | undefined

  /**
   * The policy's caps (the stricter of --wan-limit and its wanLimitBps) and transfer mode:
   * background paces origin bytes to yield to other traffic. Returns what stops the pacing.
   */
  async function applyPolicy (options: AbortOptions): Promise<() => Promise<void>> {
    const { policy } = await client.me(options)
    const cap = stricterRate(init.wanLimit ?? 0, policy.wanLimitBps)
    const asked = init.transfer ?? 'foreground'
    const mode = asked === 'policy' ? policy.transfer ?? 'background' : asked
    if (mode !== 'background') {
      client.setRateLimit(cap)
      return async () => {}
    }
    const pacer = createCoordinatorPacer({ coordinator: client, logger }, { maxRate: cap })
    client.setLimiter(pacer)
    return pacer.stop
  }

  async function sync (req: SyncRequest): Promise<SyncSummary> {
    let stopPacing = async (): Promise<void> => {}
    try {
      await mkdirPrivate(dataDir)
      stopPacing = await applyPolicy({ signal: req.signal })
      return await syncVersion(req)
    } finally {
      await stopPacing()
    }
  }

  /** Resolves the version, then, unless the output already is it, runs the phases in order. */
  async function syncVersion (req: SyncRequest): Promise<SyncSummary> {
    const started = performance.now()
    const originAtStart = client.receivedBytes
    const out = resolve(req.out)
    const signal = req.signal
    const key = await publicKey({ signal })
    const records = imageRecordsOf(dataDir, req.image)
    const installed = await readJson<InstalledState>(records.installed)
    const checkpoint = await readJson<Checkpoint>(records.checkpoint)
    const installedHere = installed?.out === out ? installed : undefined
    const target = await resolveTarget(components, { image: req.image, version: req.version, key, records, installedHere, checkpoint }, { signal })
    if (installedHere?.manifestCid === target.manifestCid && isInstalledFile(out, installedHere)) {
      // nothing to resume: only the installed manifest stays
      if (checkpoint == null) await pruneRecords(records, logger, { installed: installedHere.version })
      const summary = baseSummary(target.manifest, out, installedHere)
      const bytes = { local: 0, peers: 0, origin: client.receivedBytes - originAtStart }
      return { ...summary, upToDate: true, bytes, seconds: (performance.now() - started) / 1000 }
    }
    const oldManifest = await installedManifest(records, installedHere, key, logger)
    const partial = await openPartial(out, target, records, checkpoint)
    const job = startJob({ req, out, records, target, installed, installedHere, oldManifest, partial, started, originAtStart }, checkpoint)
    try {
      // the checkpoint names this manifest before any byte is written, so a later run can trust the partial file's layout
      await writeRecord(records.partialManifest, target.envelope)
      await job.ctx.writeCheckpoint()
      components.observer?.started?.({
        manifest: target.manifest,
        envelope: target.envelope,
        tempPath: partial.path,
        openTemp: async () => await reopenOurs(partial.path, partial.identity()),
        isVerified: job.ledger.isVerified
      })
      // phase 2, the LAN peers (the swarm): they join and wait for the site's agents while the local sources run
      const peers = components.extraSources?.(target.manifest, { fromVersion: oldManifest?.version }) ?? []
      for (const source of peers) source.prepare?.({ signal })
      const hostReads = await fromLocalSources(job)
      await hostReadsAndPeers(job, hostReads, peers)
      // the index's file table and caches are not needed past the local sources: free them before
      // the origin's zstd window is allocated (peak RSS); the next lookup or refresh reopens it
      await components.hostIndex?.close()
      await fromDeltaPack(job)
      await fromOriginBlocks(job)
      await wholeChunks(job)
      return await finish(job)
    } catch (err) {
      return await abandon(job, err)
    }
  }

  /** The partial file beside the output: an earlier run's only when it is provably the one we wrote (never a symlink). */
  async function openPartial (out: string, target: SyncTarget, records: ImageRecords, checkpoint: Checkpoint | undefined): Promise<PartialImage> {
    await mkdir(dirname(out), { recursive: true })
    const temp = partialPathOf(out)
    await mkdirPrivate(records.partialDir)
    const sameRun = checkpoint != null && checkpoint.manifestCid === target.manifestCid && checkpoint.temp === temp
    if (checkpoint != null && checkpoint.temp !== temp) await rm(checkpoint.temp, { force: true }) // rm unlinks a symlink, never its target
    const partial = openPartialImage(temp, sameRun ? checkpoint.file : undefined, target.manifest.size)
    if (partial.reason != null) logger.warn(partial.reason)
    else if (partial.state === 'rehash') logger.info(`the partial file ${temp} changed after its last checkpoint: hashing every chunk of it again`)
    return partial
  }

  /** The ledger (trusting the checkpoint's bitmap only for a trusted partial file) and the context sources fill. */
  function startJob (job: Omit<SyncJob, 'ledger' | 'ctx'>, checkpoint: Checkpoint | undefined): SyncJob {
    const trusted = job.partial.state === 'trusted' && checkpoint != null ? Buffer.from(checkpoint.verified, 'base64') : undefined
    const ledger = createSyncLedger(job.target.manifest, trusted)
    const { target: { manifest, manifestCid }, records } = job
    const totalBytes = nonZeroBytesOf(manifest)
    const ctx = createSyncContext({
      ledger,
      partial: job.partial,
      logger,
      originBytes: () => client.receivedBytes - job.originAtStart,
      onProgress: (p) => components.onProgress?.({ image: manifest.name, version: manifest.version, totalBytes, ...p }),
      onChunkVerified: (chunk) => components.observer?.chunkVerified?.(chunk),
      onCheckpoint: init.onCheckpoint
    }, { checkpointPath: records.checkpoint, manifestCid, checkpointIntervalMs, signal: job.req.signal, segmentSpool: records.segmentSpool })
    const from = job.oldManifest
    const path = from != null ? job.records.packOf(from.version, manifest.version) : ''
    const deltaPack = from != null ? createDeltaPackSource({ client, logger }, { image: manifest.name, version: manifest.version, from, path }) : undefined
    return { ...job, ledger, ctx, deltaPack }
  }

  /**
   * Runs one source. A failing local or peer source is skipped with a warning; an origin's
   * failure, a full disk or an abort ends the sync.
   */
  async function runSource (job: SyncJob, source: BlockSource): Promise<void> {
    const { ctx } = job
    ctx.setSource(source)
    ctx.setPhase(source.name)
    try {
      await source.fill(ctx, { signal: job.req.signal })
    } catch (err) {
      if (job.req.signal?.aborted === true || source.kind === 'origin' || isDiskFull(err)) throw err
      logger.warn(`${source.name}: ${(err as Error).message} (continuing with the next source)`)
    } finally {
      await source.close?.()
    }
    await ctx.tick()
  }

  /** Runs `sources` in order until no block is missing (the ones not run are closed). */
  async function runSources (job: SyncJob, sources: BlockSource[]): Promise<void> {
    for (const source of sources) {
      if (job.ctx.missingCount() > 0) await runSource(job, source)
      else await source.close?.()
    }
  }

  /** Phase 1: this machine (the partial file of an earlier run, the older version at the output, the host index). */
  async function fromLocalSources (job: SyncJob): Promise<HostReadPlan | undefined> {
    const sources: BlockSource[] = []
    if (job.partial.state !== 'fresh') sources.push(createResumeSource({ fd: job.partial.fd }))
    const outFd = job.oldManifest != null ? openOutputForReading(job.out) : undefined
    if (outFd != null) sources.push({ ...createSelfSeedSource({ fd: outFd, manifest: job.oldManifest! }), close: async () => { closeSync(outFd) } })
    await runSources(job, sources)
    const index = components.hostIndex
    if (index == null) return undefined
    // a ready index is used as of its last refresh, every block re-hashed (refreshHostIndexAfter)
    if (init.refreshIndex !== false) {
      if (index.isReady()) job.refreshIndexAfter = index
      else {
        job.ctx.setPhase('indexing host folders')
        await refreshHostIndex(index, logger, { signal: job.req.signal })
      }
    }
    if (job.ctx.missingCount() === 0) return undefined
    job.ctx.setPhase(HOST_INDEX_SOURCE)
    return await planHostReads(index, job.ctx, { signal: job.req.signal, logger })
  }

  /** The host index reads, then the peers; with peers, side by side (local-pending.ts). */
  async function hostReadsAndPeers (job: SyncJob, plan: HostReadPlan | undefined, peers: BlockSource[]): Promise<void> {
    if (plan == null || plan.blocks.length === 0) return await runSources(job, peers)
    const beside = peers.length === 0 ? undefined : async (ctx: DrivenSyncContext) => { await runSources({ ...job, ctx }, peers) }
    await readHostBeside(job.ctx, plan, { logger, signal: job.req.signal, groupOf: job.ledger.groupOf }, beside)
  }

  /** Phase 3: the delta pack from the installed version, when the cost model says it pays for what is still missing. */
  async function fromDeltaPack (job: SyncJob): Promise<void> {
    if (job.deltaPack != null) await runSources(job, [job.deltaPack])
  }

  /** Phase 4: the origin's block batches, for every distinct block still missing. */
  async function fromOriginBlocks (job: SyncJob): Promise<void> {
    const { name, version } = job.target.manifest
    await runSources(job, [createBlockBatchSource({ client, logger }, { image: name, version })])
  }

  /** Phase 5: chunks still incomplete or failed, fetched whole from the origin and verified; the peers for what it cannot serve. */
  async function wholeChunks (job: SyncJob): Promise<void> {
    const { ctx, ledger } = job
    ctx.setSource(undefined)
    ctx.setPhase('whole chunks')
    const unavailable: number[] = []
    for (const chunk of ledger.unverifiedChunks()) {
      // the coordinator's copy is damaged or gone: fetch every other chunk still, then ask the peers for this one
      if ((await fetchChunkFromOrigin(client, ctx, chunk, { signal: job.req.signal })) !== true) unavailable.push(chunk)
      await ctx.tick()
    }
    if (unavailable.length > 0) await fromPeersOrFail(job, unavailable)
    const unverified = ledger.unverifiedChunks()
    if (unverified.length > 0) throw new SyncIncompleteError(`chunk ${unverified[0]} could not be verified from any source`)
  }

  /** Chunks the origin cannot serve: the peers once more (they may hold them by now), else a message for the admin. */
  async function fromPeersOrFail (job: SyncJob, chunks: number[]): Promise<void> {
    const { ledger, target: { manifest } } = job
    for (const source of components.extraSources?.(manifest, {}) ?? []) {
      if (chunks.every(ledger.isVerified)) break
      await runSource(job, source) // whole chunks that failed are not missing blocks: run it anyway
    }
    const still = chunks.filter(chunk => !ledger.isVerified(chunk))
    if (still.length === 0) return
    await job.ctx.checkpoint()
    const first = `chunk ${still[0]} (${chunkCid(manifest.chunks[still[0]].digest).toString()})${still.length > 1 ? ` and ${still.length - 1} more` : ''}`
    throw new ChunkUnavailableError(`${first} of ${manifest.name}@${manifest.version} is damaged on the coordinator and no peer had it: ` +
      'ask the coordinator\'s admin to run `trimswarm coordinator fsck --repair-from IMAGE_FILE` (its log names the chunk); ' +
      `the ${ledger.verifiedCount()} of ${ledger.chunkCount} chunks verified so far are kept, run the same command again afterwards`)
  }

  /** Phase 6: in place: fsync, rename over the output, remember the manifest for next time. */
  async function finish (job: SyncJob): Promise<SyncSummary> {
    const { ctx, ledger, target, records, out } = job
    const { manifest } = target
    ctx.setPhase('finishing')
    await ctx.settled() // no fsync of a checkpoint still running on the descriptor install closes
    const file = await job.partial.install(out)
    const state: InstalledState = { image: manifest.name, version: manifest.version, out, manifestCid: target.manifestCid, ...file, seq: target.pointer?.seq }
    await recordInstalled(records, target.envelope, state, job.installed)
    await dropPartialRecords(records)
    await job.deltaPack?.remove()
    await pruneRecords(records, logger, { installed: manifest.version })
    ctx.progress()
    components.observer?.finished?.({ manifest, envelope: target.envelope, out })
    const { bytes, ...counts } = ledger.tally
    const summary: SyncSummary = {
      ...baseSummary(manifest, out, job.installedHere),
      ...counts,
      upToDate: false,
      bytes: { ...bytes, origin: client.receivedBytes - job.originAtStart },
      seconds: (performance.now() - job.started) / 1000, // until the image was in place
      usedDeltaPack: job.deltaPack?.used() ?? false
    }
    if (job.refreshIndexAfter != null) {
      if (job.req.deferIndexRefresh === true) deferredRefresh = job.refreshIndexAfter
      else await refreshHostIndexAfter(job.refreshIndexAfter, logger, { signal: job.req.signal })
    }
    return summary
  }

  /** A sync that stopped: what is verified is kept for the next run, except on a full disk, which must not stay full because of us. */
  async function abandon (job: SyncJob, err: unknown): Promise<never> {
    components.observer?.stopped?.()
    await job.ctx.settled() // a checkpoint still running finishes (or fails) before the file is closed or removed
    if (isDiskFull(err)) {
      // the old image is untouched; the partial file and its records go
      await job.partial.discard()
      await dropPartialRecords(job.records)
      const { manifest } = job.target
      const need = `${nonZeroBytesOf(manifest)} bytes of data for ${manifest.name}@${manifest.version}`
      throw new DiskFullError(`no space left on the file system of ${job.out} (need up to ${need}); ` +
        `the old image is intact, the partial file ${job.partial.path} was removed`, { cause: err })
    }
    job.partial.close()
    await job.ctx.writeCheckpoint().catch(() => {})
    throw err
  }

  async function refreshDeferredIndex (options: AbortOptions = {}): Promise<void> {
    const index = deferredRefresh
    deferredRefresh = undefined
    if (index != null) await refreshHostIndexAfter(index, logger, options)
  }

  return { sync, publicKey, refreshDeferredIndex }
}
