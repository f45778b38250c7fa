/**
 * Brings an output file to exactly one image version (docs/ARCHITECTURE.md "Sync").
 *
 * The signed manifest is verified against the pinned coordinator key before
 * anything is written. Blocks are written into a sparse temp file beside the
 * output, from the sources in order (partial file, older version, host index,
 * peers, origin); each block is re-hashed against its manifest prefix, each
 * chunk against its full digest once complete. Verified chunks are
 * checkpointed (temp fsync, then a bitmap renamed into place) so a restart
 * after kill -9 re-fetches nothing verified. When every chunk verifies the
 * temp file is fsynced and renamed over the output.
 */
import { closeSync, fstatSync, fsyncSync, readSync, writeSync } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { setImmediate as yieldLoop } from 'node:timers/promises'
import type { FileHandle } from 'node:fs/promises'
import { equals } from 'multiformats/bytes'
import { api } from '../protocol/index.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../protocol/constants.ts'
import { toHex } from '../protocol/block-id.ts'
import { importPublicKey, openSignedManifest } from '../protocol/signed-manifest.ts'
import { chunkCid } from '../protocol/block-id.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { hashBytes, manifestCidOf } from '../chunker/blake3.ts'
import type { BlockSource, SourceKind, SyncContext } from './block-source.ts'
import { BATCH_COMPRESSION_PENALTY, CHECKPOINT_INTERVAL_MS, DATA_FILES, PRIVATE_FILE_MODE } from './constants.ts'
import { mkdirPrivate } from './private-files.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { partialPathOf } from './output-guard.ts'
import { ChunkUnavailableError, DiskFullError, DowngradeRefusedError, isDiskFull, isUnavailableAtOrigin, KeyPinError, SyncIncompleteError } from './errors.ts'
import { downgradeOf, newestSeen, type SeenPointer } from './version-guard.ts'
import { MAX_VERSION_POINTER_BYTES, openVersionPointer, type VersionPointer } from '../protocol/version-pointer.ts'
import { identityOf, installPartialFile, isInstalledFile, openOutputForReading, openPartialFile, reopenOurs, type FileIdentity } from './partial-file.ts'
import { describeRefresh, type HostIndex } from './host-index.ts'
import type { AbortOptions, AgentLogger, BytesBySource } from './interface.ts'
import { blockOffsets, createHostIndexSource, createResumeSource, createSelfSeedSource, prefixKey } from './local-sources.ts'
import { createBlockBatchSource, createDeltaPackSource, deltaPackBlocks, removeDeltaPack } from './origin-sources.ts'
import { createBackgroundPacer, createHealthProbe } from './background-pacer.ts'
import { stricterRate } from './rate-limiter.ts'
import { pruneImageData } from './data-dir-prune.ts'
import { formatBytes } from './progress-reporter.ts'

/** Progress of a sync, for the progress bar. */
export interface SyncProgress {
  image: string
  version: string
  phase: string
  /** Non-zero bytes of the target version. */
  totalBytes: number
  /** Non-zero bytes in place and checked against their block prefix. */
  doneBytes: number
  bytes: BytesBySource
}

/** The result of a sync. */
export interface SyncSummary {
  image: string
  version: string
  /** The version that was at the output before (null: none known). */
  fromVersion: string | null
  out: string
  /** True when the output already held this version (nothing to do). */
  upToDate: boolean
  bytes: BytesBySource
  seconds: number
  size: number
  nonZeroBytes: number
  /** Blocks from any source that failed verification. */
  discardedBlocks: number
  /** Assembled chunks that failed their digest (fetched whole again). */
  discardedChunks: number
  /** Chunks fetched whole from the origin. */
  chunksFetched: number
  /** Blocks by source name. */
  blocksBySource: Record<string, number>
  usedDeltaPack: boolean
}

/** What is recorded of an installed version (for self-seeding and up-to-date checks). */
interface InstalledState {
  image: string
  version: string
  out: string
  manifestCid: string
  size: number
  mtimeMs: number
  /** Device and inode of the file installed (decimal): a file put in its place by someone else is not "up to date". */
  dev?: string
  ino?: string
  /** The version's publish sequence, when it was installed through the signed latest pointer. */
  seq?: number
}

/** Checkpoint of a sync in progress. */
interface Checkpoint {
  image: string
  version: string
  manifestCid: string
  temp: string
  /** Bitmap of verified chunks, base64. */
  verified: string
  /** The partial file this checkpoint vouches for; absent: none created yet (nothing is trusted). */
  file?: FileIdentity
}

/**
 * What a sync tells an observer, so the swarm can serve an in-progress download:
 * the temp file and which chunks of it are verified, then the finished file.
 */
export interface SyncObserver {
  /** The temp file exists (sized, sparse); `isVerified(chunk)` tells what may be served from it. */
  started?: (info: { manifest: Manifest, envelope: Uint8Array, tempPath: string, openTemp: () => Promise<FileHandle>, isVerified: (chunk: number) => boolean }) => void
  /** A chunk of the temp file was verified against its digest. */
  chunkVerified?: (chunk: number) => void
  /** The version is in place at `out`. */
  finished?: (info: { manifest: Manifest, envelope: Uint8Array, out: string }) => void
  /** The sync stopped without finishing (the temp file may be gone). */
  stopped?: () => void
}

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
  /** Refresh the host index before using it (default true). */
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
}

/** Brings files to image versions. */
export interface ImageSync {
  sync: (req: SyncRequest) => Promise<SyncSummary>
  /** The coordinator key, pinned on first use. */
  publicKey: (options?: AbortOptions) => Promise<CryptoKey>
}

function safeName (s: string): string {
  return s.replace(/[^A-Za-z0-9._+-]/g, '_')
}

async function writeFileAtomic (path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`
  const fh = await open(tmp, 'w', PRIVATE_FILE_MODE) // only ever data dir files
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}

async function readJson<T> (path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return undefined
  }
}

async function fsyncDir (dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r')
    try { await fh.sync() } finally { await fh.close() }
  } catch {}
}

/**
 * Opens a signed envelope as the version the coordinator lists: signed by the
 * pinned key (openSignedManifest's errors), for that image and version, with
 * that manifest CID (else KeyPinError). Wherever the envelope came from (data
 * dir, peer, origin), this is what makes it trusted.
 */
export async function openListedManifest (envelope: Uint8Array, key: CryptoKey, listed: { image: string, version: string, manifestCid: string }): Promise<{ manifest: Manifest, manifestCid: string }> {
  const { manifest, manifestBytes } = await openSignedManifest(envelope, key)
  if (manifest.name !== listed.image || manifest.version !== listed.version) {
    throw new KeyPinError(`got the manifest of ${manifest.name}@${manifest.version}, asked for ${listed.image}@${listed.version}`)
  }
  const manifestCid = manifestCidOf(manifestBytes).toString()
  if (manifestCid !== listed.manifestCid) throw new KeyPinError(`the manifest of ${manifest.name}@${manifest.version} is ${manifestCid}, the coordinator lists ${listed.manifestCid}`)
  return { manifest, manifestCid }
}

/** Creates image sync over a coordinator client and the agent's data dir. */
export function createImageSync (components: ImageSyncComponents, init: ImageSyncInit): ImageSync {
  const { client, logger } = components
  const dataDir = resolve(init.dataDir)
  const checkpointMs = init.checkpointIntervalMs ?? CHECKPOINT_INTERVAL_MS
  let key: CryptoKey | undefined

  async function publicKey (options: AbortOptions = {}): Promise<CryptoKey> {
    if (key != null) return key
    const pinPath = join(dataDir, DATA_FILES.key)
    const pinned = await readJson<{ url: string, publicKey: string }>(pinPath)
    let raw: string
    if (init.publicKey != null) {
      raw = init.publicKey
      if (pinned != null && pinned.publicKey !== raw) throw new KeyPinError(`the configured coordinator key differs from the one pinned in ${pinPath}; remove that file if the coordinator's key was changed on purpose`)
    } else if (pinned != null) {
      raw = pinned.publicKey
    } else {
      const res = await client.json('GET', api.routes.key, api.KeyResponse, undefined, options)
      raw = res.publicKey
      logger.info(`pinned coordinator key ${raw} in ${pinPath}`)
    }
    const bytes = Uint8Array.from(Buffer.from(raw, 'base64'))
    key = await importPublicKey(bytes)
    if (pinned == null) {
      await mkdirPrivate(dataDir)
      await writeFileAtomic(pinPath, JSON.stringify({ url: client.url, publicKey: raw }) + '\n')
    }
    return key
  }

  /** The mode a sync runs in: the caller's, else the policy's (background when it names none). */
  function transferMode (policy: api.EffectivePolicy): api.TransferMode {
    const asked = init.transfer ?? 'foreground'
    return asked === 'policy' ? policy.transfer ?? 'background' : asked
  }

  /**
   * The signed "latest" of `image`, verified with the pinned key and, unless the
   * user named a version (`explicit`), checked not to move back
   * (version-guard.ts); the newest seen is stored in `imageDir`.
   */
  async function followLatest (image: string, pk: CryptoKey, imageDir: string, installed: InstalledState | undefined, explicit: boolean, options: AbortOptions): Promise<VersionPointer> {
    const bytes = await client.bytes('GET', api.routes.latest(image), undefined, { ...options, maxBytes: MAX_VERSION_POINTER_BYTES })
    const pointer = await openVersionPointer(bytes, pk, image)
    const seenPath = join(imageDir, DATA_FILES.latestSeen)
    const seen = await readJson<SeenPointer>(seenPath)
    const refusal = explicit ? undefined : downgradeOf(pointer, seen, installed)
    if (refusal != null) throw new DowngradeRefusedError(refusal)
    const next = newestSeen(pointer, seen)
    if (next !== seen) {
      await mkdir(imageDir, { recursive: true })
      await writeFileAtomic(seenPath, JSON.stringify(next) + '\n')
    }
    return pointer
  }

  async function sync (req: SyncRequest): Promise<SyncSummary> {
    const pacing = { stop: async (): Promise<void> => {} }
    try {
      return await syncPaced(req, pacing)
    } finally {
      await pacing.stop()
    }
  }

  async function syncPaced (req: SyncRequest, pacing: { stop: () => Promise<void> }): Promise<SyncSummary> {
    const started = performance.now()
    const signal = req.signal
    const out = resolve(req.out)
    const originAtStart = client.receivedBytes
    const bytes: BytesBySource = { local: 0, peers: 0, origin: 0 }
    const blocksBySource: Record<string, number> = {}
    await mkdirPrivate(dataDir)

    // policy caps: the stricter of --wan-limit and the policy's wanLimitBps
    const me = await client.me({ signal })
    const cap = stricterRate(init.wanLimit ?? 0, me.policy.wanLimitBps)
    if (transferMode(me.policy) === 'background') {
      // yields to other traffic on the WAN; the caps still bound it
      const pacer = createBackgroundPacer({ probe: createHealthProbe(() => client.url), logger }, { maxRate: cap })
      client.setLimiter(pacer)
      pacing.stop = pacer.stop
    } else {
      client.setRateLimit(cap)
    }

    // 1. the manifest, verified before anything is written
    const pk = await publicKey({ signal })
    // the version's info first (a few hundred bytes): a manifest we already hold (an interrupted
    // sync's, or the installed one) is not downloaded again (restarts and daemon polls cost ~nothing),
    // and with LAN sharing one a peer of the site holds comes from that peer
    const imageDir = join(dataDir, DATA_FILES.manifests, safeName(req.image))
    const partialDir = join(dataDir, DATA_FILES.partial)
    const checkpointPath = join(partialDir, `${safeName(req.image)}.json`)
    const partialManifestPath = join(partialDir, `${safeName(req.image)}.manifest`)
    const statePath = join(imageDir, DATA_FILES.installed)
    const installed = await readJson<InstalledState>(statePath)
    const cp = await readJson<Checkpoint>(checkpointPath)
    const packsDir = join(dataDir, DATA_FILES.packs, safeName(req.image))
    /** Drops this image's packs and manifests no install or resume needs, and says what that freed. */
    const prune = async (now: { installed?: string, resume?: string }): Promise<void> => {
      const keep = {
        manifest: now.installed != null ? `${safeName(now.installed)}.manifest` : undefined,
        pack: now.installed != null && now.resume != null ? `${safeName(now.installed)}..${safeName(now.resume)}.pack` : undefined
      }
      const r = await pruneImageData({ packsDir, manifestsDir: imageDir }, keep)
      if (r.packs + r.manifests > 0) logger.info(`data dir: removed ${r.packs} delta pack${r.packs === 1 ? '' : 's'} and ${r.manifests} manifest${r.manifests === 1 ? '' : 's'} of ${req.image} no longer needed (${formatBytes(r.bytes)} freed)`)
    }
    const known: Array<{ cid: string, path: string }> = []
    if (cp != null) known.push({ cid: cp.manifestCid, path: partialManifestPath })
    if (installed != null && installed.out === out) known.push({ cid: installed.manifestCid, path: join(imageDir, `${safeName(installed.version)}.manifest`) })
    const installedHere = installed?.out === out ? installed : undefined
    const pointer = req.version == null ? await followLatest(req.image, pk, imageDir, installedHere, false, { signal }) : undefined
    if (req.version != null) {
      // a named version is installed as asked; the signed latest is still learnt (best effort), so a later
      // unnamed sync cannot be moved below what the coordinator announced by then
      await followLatest(req.image, pk, imageDir, installedHere, true, { signal }).catch((err: Error) => {
        if (signal?.aborted === true) throw err
        logger.info(`the coordinator's signed latest of ${req.image} is unavailable (${err.message}); installing ${req.version} as asked`)
      })
    }
    const info = await client.json('GET', api.routes.versionInfo(req.image, pointer?.version ?? req.version!), api.VersionInfo, undefined, { signal })
    if (pointer != null && info.manifestCid !== pointer.manifestCid) {
      throw new KeyPinError(`the coordinator lists manifest ${info.manifestCid} for ${req.image}@${pointer.version}, its signed latest names ${pointer.manifestCid}`)
    }
    let envelope: Uint8Array | undefined
    for (const k of known) {
      if (k.cid !== info.manifestCid) continue
      envelope = await readFile(k.path).catch(() => undefined)
      if (envelope != null) break
    }
    const fromOrigin = async (options: AbortOptions): Promise<Uint8Array> => await client.bytes('GET', api.routes.version(req.image, info.version), undefined, options)
    envelope ??= components.manifestSource != null ? await components.manifestSource(info, fromOrigin, { signal }) : await fromOrigin({ signal })
    const { manifest: m, manifestCid } = await openListedManifest(envelope, pk, { image: req.image, version: info.version, manifestCid: info.manifestCid })
    const nonZero = m.blockPrefixes.length / BLOCK_PREFIX_BYTES * BLOCK_SIZE
    const baseSummary = { image: m.name, version: m.version, out, size: m.size, nonZeroBytes: nonZero, fromVersion: installed?.out === out ? installed.version : null }

    // already there?
    if (installed != null && installed.out === out && installed.manifestCid === manifestCid) {
      if (isInstalledFile(out, installed)) {
        // nothing to resume: only the installed manifest stays
        if (cp == null) await prune({ installed: installed.version })
        bytes.origin = client.receivedBytes - originAtStart
        return { ...baseSummary, upToDate: true, bytes, seconds: (performance.now() - started) / 1000, discardedBlocks: 0, discardedChunks: 0, chunksFetched: 0, blocksBySource, usedDeltaPack: false }
      }
    }
    let oldManifest: Manifest | undefined
    if (installed != null && installed.out === out) {
      try {
        const oldEnv = await readFile(join(imageDir, `${safeName(installed.version)}.manifest`))
        oldManifest = (await openSignedManifest(oldEnv, pk)).manifest
      } catch (err) {
        logger.warn(`stored manifest of ${m.name}@${installed.version} unusable (${(err as Error).message}); not self-seeding`)
      }
    }

    // 2. the temp file beside the output, and its checkpoint
    await mkdir(dirname(out), { recursive: true })
    const temp = partialPathOf(out)
    await mkdirPrivate(partialDir)
    const nChunks = m.chunks.length
    const nBlocks = m.blockPrefixes.length / BLOCK_PREFIX_BYTES
    const verified = new Uint8Array(Math.ceil(nChunks / 8))
    // the partial file of an earlier run counts only when it is provably the one we wrote (never a symlink)
    const sameRun = cp != null && cp.manifestCid === manifestCid && cp.temp === temp
    if (cp != null && cp.temp !== temp) await rm(cp.temp, { force: true }) // rm unlinks a symlink, never its target
    const partial = openPartialFile(temp, sameRun ? cp.file : undefined, m.size)
    if (partial.reason != null) logger.warn(partial.reason)
    const fd = partial.fd
    let fileId = identityOf(fd)
    if (partial.state === 'trusted') verified.set(Buffer.from(cp!.verified, 'base64').subarray(0, verified.length))
    else if (partial.state === 'rehash') logger.info(`the partial file ${temp} changed after its last checkpoint: hashing every chunk of it again`)
    const resuming = partial.state !== 'fresh'
    const isVerified = (c: number): boolean => (verified[c >> 3] & (1 << (c & 7))) !== 0
    const writeCheckpoint = async (): Promise<void> => {
      const c: Checkpoint = { image: m.name, version: m.version, manifestCid, temp, verified: Buffer.from(verified).toString('base64'), file: fileId }
      await writeFileAtomic(checkpointPath, JSON.stringify(c))
    }
    let fdOpen = true
    const packPath = oldManifest != null ? join(dataDir, DATA_FILES.packs, safeName(m.name), `${safeName(oldManifest.version)}..${safeName(m.version)}.pack`) : undefined
    try {
      // the checkpoint names this manifest before any byte is written, so a later run can trust the temp's layout
      await writeFileAtomic(partialManifestPath, envelope)
      await writeCheckpoint()

      // per-block state
      const offsets = blockOffsets(m)
      const chunkOf = new Uint32Array(nBlocks)
      const remaining = new Uint32Array(nChunks)
      const have = new Uint8Array(nBlocks)
      for (let ci = 0; ci < nChunks; ci++) {
        const c = m.chunks[ci]
        const len = c.length / BLOCK_SIZE
        for (let k = 0; k < len; k++) chunkOf[c.firstBlock + k] = ci
        if (isVerified(ci)) have.fill(1, c.firstBlock, c.firstBlock + len)
        else remaining[ci] = len
      }
      // missing blocks grouped by prefix: each distinct block is obtained once and written everywhere it occurs
      const groups = new Map<bigint, number[]>()
      for (let i = 0; i < nBlocks; i++) {
        if (have[i] === 1) continue
        const k = prefixKey(m.blockPrefixes, i)
        const g = groups.get(k)
        if (g == null) groups.set(k, [i])
        else g.push(i)
      }
      let doneBytes = 0
      for (let i = 0; i < nBlocks; i++) if (have[i] === 1) doneBytes += BLOCK_SIZE
      let discardedBlocks = 0
      let discardedChunks = 0
      let chunksFetched = 0
      const failedChunks = new Set<number>()
      let phase = 'starting'
      let lastCheckpoint = performance.now()
      let dirty = false
      let chunkBuf = new Uint8Array(0)

      const progress = (): void => {
        bytes.origin = client.receivedBytes - originAtStart
        components.onProgress?.({ image: m.name, version: m.version, phase, totalBytes: nonZero, doneBytes, bytes: { ...bytes } })
      }
      const pwrite = (data: Uint8Array, pos: number): void => {
        let n = 0
        while (n < data.length) n += writeSync(fd, data, n, data.length - n, pos + n)
      }
      const readChunk = (ci: number): Uint8Array => {
        const c = m.chunks[ci]
        if (chunkBuf.length < c.length) chunkBuf = new Uint8Array(c.length)
        const view = chunkBuf.subarray(0, c.length)
        let n = 0
        while (n < c.length) {
          const r = readSync(fd, view, n, c.length - n, c.offset + n)
          if (r === 0) break
          n += r
        }
        view.fill(0, n)
        return view
      }
      const markVerified = (ci: number): void => {
        verified[ci >> 3] |= 1 << (ci & 7)
        dirty = true
        components.observer?.chunkVerified?.(ci)
      }
      const verifyChunk = (ci: number): void => {
        const c = m.chunks[ci]
        if (equals(hashBytes(readChunk(ci)), c.digest)) {
          markVerified(ci)
          return
        }
        // blocks matched their prefixes but the chunk does not: a prefix collision or a changed source; fetch it whole
        discardedChunks++
        failedChunks.add(ci)
        logger.warn(`chunk ${ci} (${chunkCid(c.digest).toString()}) failed verification after assembly; fetching it whole`)
      }
      const place = (index: number, data: Uint8Array, source: string, kind: SourceKind): void => {
        const k = prefixKey(m.blockPrefixes, index)
        const g = groups.get(k)
        if (g == null) return
        groups.delete(k)
        for (const i of g) {
          if (have[i] === 1) continue
          pwrite(data, offsets[i])
          have[i] = 1
          doneBytes += BLOCK_SIZE
          blocksBySource[source] = (blocksBySource[source] ?? 0) + 1
          if (kind === 'local') bytes.local += BLOCK_SIZE
          const ci = chunkOf[i]
          if (--remaining[ci] === 0) verifyChunk(ci)
        }
      }

      let currentSource: BlockSource | undefined
      const ctx: SyncContext = {
        manifest: m,
        missing () {
          const out: number[] = []
          for (const g of groups.values()) out.push(g[0])
          return out.sort((a, b) => a - b)
        },
        missingCount: () => groups.size,
        isMissing: (index) => groups.has(prefixKey(m.blockPrefixes, index)),
        offerBlock (index, data, kind) {
          if (!groups.has(prefixKey(m.blockPrefixes, index))) return true
          const d = hashBytes(data)
          const p = index * BLOCK_PREFIX_BYTES
          for (let b = 0; b < BLOCK_PREFIX_BYTES; b++) {
            if (d[b] !== m.blockPrefixes[p + b]) {
              discardedBlocks++
              return false
            }
          }
          place(index, data, currentSource?.name ?? kind, kind)
          return true
        },
        offerChunk (ci, data, kind, verified = false) {
          const c = m.chunks[ci]
          if (isVerified(ci)) return true
          if (kind === 'origin') chunksFetched++ // whole chunks from the origin, whichever source asked
          if (data.length !== c.length || (!verified && !equals(hashBytes(data), c.digest))) {
            discardedChunks++
            return false
          }
          pwrite(data, c.offset)
          const len = c.length / BLOCK_SIZE
          if (kind === 'peers') bytes.peers += c.length
          for (let k = 0; k < len; k++) {
            const i = c.firstBlock + k
            if (have[i] === 0) { have[i] = 1; doneBytes += BLOCK_SIZE }
          }
          remaining[ci] = 0
          failedChunks.delete(ci)
          markVerified(ci)
          // the same blocks elsewhere in the image come for free
          for (let k = 0; k < len; k++) {
            const i = c.firstBlock + k
            if (groups.has(prefixKey(m.blockPrefixes, i))) place(i, data.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE), 'whole chunks', kind)
          }
          return true
        },
        unverifiedChunks () {
          const out: number[] = []
          for (let ci = 0; ci < nChunks; ci++) if (!isVerified(ci)) out.push(ci)
          return out
        },
        async tick () {
          signal?.throwIfAborted()
          if (dirty && performance.now() - lastCheckpoint >= checkpointMs) await checkpoint()
          progress()
          await yieldLoop()
        }
      }
      const checkpoint = async (): Promise<void> => {
        lastCheckpoint = performance.now()
        if (!dirty) return
        dirty = false
        fsyncSync(fd) // data first, then the bitmap that vouches for it
        fileId = identityOf(fd) // its ctime now: a later change (by anyone) makes the next run hash again
        await writeCheckpoint()
        let n = 0
        for (let ci = 0; ci < nChunks; ci++) if (isVerified(ci)) n++
        init.onCheckpoint?.(n)
      }

      components.observer?.started?.({ manifest: m, envelope, tempPath: temp, openTemp: async () => await reopenOurs(temp, fileId), isVerified })

      // 3. sources in order
      const sources: BlockSource[] = []
      if (resuming) sources.push(createResumeSource({ fd }))
      const outFd = oldManifest != null ? openOutputForReading(out) : undefined
      if (outFd != null) {
        sources.push({ ...createSelfSeedSource({ fd: outFd, manifest: oldManifest! }), close: async () => { closeSync(outFd) } })
      }
      if (components.hostIndex != null) {
        if (init.refreshIndex !== false) {
          phase = 'indexing host folders'
          progress()
          logger.info(describeRefresh(await components.hostIndex.refresh({ signal })))
        }
        sources.push(createHostIndexSource({ index: components.hostIndex, logger }))
      }
      sources.push(...(components.extraSources?.(m, { fromVersion: oldManifest?.version }) ?? []))
      const originSources: BlockSource[] = []
      let usedDeltaPack = false
      if (oldManifest != null && packPath != null) {
        // the delta pack pays when its blocks are mostly ones we still miss (decided after the local sources ran)
        originSources.push({
          name: `delta pack from ${oldManifest.version}`,
          kind: 'origin',
          fill: async (c, options) => {
            const info = await client.json('GET', api.routes.versionInfo(m.name, m.version), api.VersionInfo, undefined, options)
            if (info.previous !== oldManifest.version || info.deltaPackBytes == null || info.deltaPackBytes === 0) {
              await removeDeltaPack(packPath)
              return
            }
            const pack = deltaPackBlocks(m.blockPrefixes, oldManifest.blockPrefixes)
            const needed = pack.filter(i => c.isMissing(i)).length
            const missing = c.missingCount()
            // cost model: pack bytes per block, a per-request batch compresses BATCH_COMPRESSION_PENALTY times worse
            const perBlock = info.deltaPackBytes / Math.max(1, pack.length)
            const batchOnly = missing * perBlock * BATCH_COMPRESSION_PENALTY
            const withPack = info.deltaPackBytes + (missing - needed) * perBlock * BATCH_COMPRESSION_PENALTY
            const partial = await stat(packPath).then(s => s.size, () => 0)
            if (withPack - partial >= batchOnly) {
              logger.info(`delta pack skipped: ${needed} of its ${pack.length} blocks still missing (${missing} missing in all)`)
              await removeDeltaPack(packPath)
              return
            }
            usedDeltaPack = true
            phase = `delta pack from ${oldManifest.version}`
            await createDeltaPackSource({ client, logger }, { image: m.name, version: m.version, from: oldManifest.version, path: packPath }).fill(c, options)
          }
        })
      }
      originSources.push(createBlockBatchSource({ client, logger }, { image: m.name, version: m.version }))

      const runSource = async (source: BlockSource): Promise<void> => {
        currentSource = source
        phase = source.name
        progress()
        try {
          await source.fill(ctx, { signal })
        } catch (err) {
          if (signal?.aborted === true || source.kind === 'origin' || isDiskFull(err)) throw err
          logger.warn(`${source.name}: ${(err as Error).message} (continuing with the next source)`)
        } finally {
          await source.close?.()
        }
        await ctx.tick()
      }
      for (const source of sources) {
        if (groups.size === 0) break
        await runSource(source)
      }
      // the index's file table and caches are not needed past the local sources: free them before
      // the origin's zstd window is allocated (peak RSS); the next lookup or refresh reopens it
      await components.hostIndex?.close()
      for (const source of originSources) {
        if (groups.size === 0) break
        await runSource(source)
      }

      /** Chunks the origin cannot serve: the peers once more (they may hold them by now), else a message for the admin. */
      const fromPeersOrFail = async (chunks: number[]): Promise<void> => {
        for (const source of components.extraSources?.(m, {}) ?? []) {
          if (chunks.every(isVerified)) break
          await runSource(source)
        }
        const still = chunks.filter(ci => !isVerified(ci))
        if (still.length === 0) return
        await checkpoint()
        let kept = 0
        for (let ci = 0; ci < nChunks; ci++) if (isVerified(ci)) kept++
        const first = `chunk ${still[0]} (${chunkCid(m.chunks[still[0]].digest).toString()})${still.length > 1 ? ` and ${still.length - 1} more` : ''}`
        throw new ChunkUnavailableError(`${first} of ${m.name}@${m.version} is damaged on the coordinator and no peer had it: ask the coordinator's admin to run \`trimswarm coordinator fsck --repair-from IMAGE_FILE\` (its log names the chunk); the ${kept} of ${nChunks} chunks verified so far are kept, run the same command again afterwards`)
      }

      // 4. chunks still incomplete or failed: fetched whole from the origin, verified
      phase = 'whole chunks'
      currentSource = undefined
      const unavailable: number[] = []
      for (let ci = 0; ci < nChunks; ci++) {
        if (isVerified(ci)) continue
        const c = m.chunks[ci]
        let data: Uint8Array
        try {
          data = await client.bytes('GET', api.routes.chunk(m.name, m.version, chunkCid(c.digest).toString()), undefined, { signal, maxBytes: c.length })
        } catch (err) {
          // the coordinator's copy is damaged or gone: fetch every other chunk still, then ask the peers for this one
          if (!isUnavailableAtOrigin(err)) throw err
          unavailable.push(ci)
          continue
        }
        if (!ctx.offerChunk(ci, data, 'origin')) {
          throw new SyncIncompleteError(`chunk ${ci} (${chunkCid(c.digest).toString()}) from the coordinator does not match the manifest: digest ${toHex(hashBytes(data))}`)
        }
        await ctx.tick()
      }
      if (unavailable.length > 0) await fromPeersOrFail(unavailable)
      for (let ci = 0; ci < nChunks; ci++) {
        if (!isVerified(ci)) throw new SyncIncompleteError(`chunk ${ci} could not be verified from any source`)
      }

      // 5. in place: fsync, rename over the output, remember the manifest for next time
      phase = 'finishing'
      progress()
      fsyncSync(fd)
      installPartialFile(fd, temp, out)
      const st = fstatSync(fd)
      const { dev, ino } = identityOf(fd)
      closeSync(fd)
      fdOpen = false
      await fsyncDir(dirname(out))
      await mkdirPrivate(imageDir)
      await writeFileAtomic(join(imageDir, `${safeName(m.version)}.manifest`), envelope)
      const state: InstalledState = { image: m.name, version: m.version, out, manifestCid, size: st.size, mtimeMs: st.mtimeMs, dev, ino, seq: pointer?.seq }
      await writeFileAtomic(statePath, JSON.stringify(state, null, 2) + '\n')
      if (installed != null && installed.version !== m.version) await rm(join(imageDir, `${safeName(installed.version)}.manifest`), { force: true })
      await rm(checkpointPath, { force: true })
      await rm(partialManifestPath, { force: true })
      if (packPath != null) await removeDeltaPack(packPath)
      await prune({ installed: m.version })
      bytes.origin = client.receivedBytes - originAtStart
      progress()
      components.observer?.finished?.({ manifest: m, envelope, out })
      return {
        ...baseSummary,
        upToDate: false,
        bytes,
        seconds: (performance.now() - started) / 1000,
        discardedBlocks,
        discardedChunks,
        chunksFetched,
        blocksBySource,
        usedDeltaPack
      }
    } catch (err) {
      components.observer?.stopped?.()
      if (fdOpen) {
        try {
          fsyncSync(fd)
          fileId = identityOf(fd)
        } catch {}
        closeSync(fd)
        fdOpen = false
      }
      if (isDiskFull(err)) {
        // a full disk must not stay full because of us: drop the partial file (the old image is untouched)
        await rm(temp, { force: true })
        await rm(checkpointPath, { force: true })
        await rm(partialManifestPath, { force: true })
        throw new DiskFullError(`no space left on the file system of ${out} (need up to ${nonZero} bytes of data for ${m.name}@${m.version}); the old image is intact, the partial file ${temp} was removed`, { cause: err })
      }
      // keep what is verified for the next run
      await writeCheckpoint().catch(() => {})
      throw err
    }
  }

  return { sync, publicKey }
}

