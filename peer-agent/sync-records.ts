/**
 * What a sync keeps in the agent's data dir, per image (docs/ARCHITECTURE.md
 * "Data dir"): the installed version's record and signed manifest, the
 * checkpoint and manifest of a sync in progress, downloaded delta packs. File
 * names and formats live here; the sync decides when to write them. Also the
 * summary fields every sync reports from these records.
 */
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../utils/atomic-write.ts'
import { DATA_FILES, PRIVATE_FILE_MODE } from './constants.ts'
import { pruneImageData } from './data-dir-prune.ts'
import type { FileIdentity } from './partial-file.ts'
import type { AgentLogger } from './interface.ts'
import { mkdirPrivate } from './private-files.ts'
import { formatBytes } from './progress-reporter.ts'
import type { Manifest } from '../protocol/manifest.ts'
import type { SyncSummary } from './image-sync.ts'
import { nonZeroBytesOf } from './sync-ledger.ts'

/** What is recorded of an installed version (for self-seeding and up-to-date checks). */
export interface InstalledState {
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
export interface Checkpoint {
  image: string
  version: string
  manifestCid: string
  temp: string
  /** Bitmap of verified chunks, base64. */
  verified: string
  /** The partial file this checkpoint vouches for; absent: none created yet (nothing is trusted). */
  file?: FileIdentity
}

/** A name made safe for a file name (image and version names are checked, but the data dir trusts nothing). */
export function safeName (name: string): string {
  return name.replace(/[^A-Za-z0-9._+-]/g, '_')
}

/** Where one image's records live in the data dir. */
export interface ImageRecords {
  image: string
  /** Signed manifests, the installed record and the newest latest seen. */
  imageDir: string
  partialDir: string
  checkpoint: string
  /** The signed manifest of the sync in progress. */
  partialManifest: string
  /** Segments of the sync in progress as they download (segment-download.ts), to resume one after a kill. */
  segmentSpool: string
  installed: string
  latestSeen: string
  packsDir: string
  /** The stored signed manifest of `version`. */
  manifestOf: (version: string) => string
  /** The delta pack from `from` to `to`. */
  packOf: (from: string, to: string) => string
}

/** The record paths of `image` under `dataDir` (pure). */
export function imageRecordsOf (dataDir: string, image: string): ImageRecords {
  const imageDir = join(dataDir, DATA_FILES.manifests, safeName(image))
  const partialDir = join(dataDir, DATA_FILES.partial)
  const packsDir = join(dataDir, DATA_FILES.packs, safeName(image))
  return {
    image,
    imageDir,
    partialDir,
    checkpoint: join(partialDir, `${safeName(image)}.json`),
    partialManifest: join(partialDir, `${safeName(image)}.manifest`),
    segmentSpool: join(partialDir, `${safeName(image)}.segments`),
    installed: join(imageDir, DATA_FILES.installed),
    latestSeen: join(imageDir, DATA_FILES.latestSeen),
    packsDir,
    manifestOf: (version) => join(imageDir, `${safeName(version)}.manifest`),
    packOf: (from, to) => join(packsDir, `${safeName(from)}..${safeName(to)}.pack`)
  }
}

/** A JSON record, or undefined when it is missing or unreadable (a record is only ever a hint checked afterwards). */
export async function readJson<T> (path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return undefined
  }
}

/** Writes a data dir file whole or not at all (utils/atomic-write.ts), readable by the agent's user only. */
export async function writeRecord (path: string, data: string | Uint8Array): Promise<void> {
  await writeFileAtomic(path, data, { mode: PRIVATE_FILE_MODE })
}

/** Drops the checkpoint and manifest of a sync in progress (it finished, or its partial file is gone). */
export async function dropPartialRecords (records: ImageRecords): Promise<void> {
  await rm(records.checkpoint, { force: true })
  await rm(records.partialManifest, { force: true })
  await rm(records.segmentSpool, { recursive: true, force: true })
}

/** Records an installed version: its signed manifest, then the record naming it; the previous version's manifest goes. */
export async function recordInstalled (records: ImageRecords, envelope: Uint8Array, state: InstalledState, previous?: InstalledState): Promise<void> {
  await mkdirPrivate(records.imageDir)
  await writeRecord(records.manifestOf(state.version), envelope)
  await writeRecord(records.installed, JSON.stringify(state, null, 2) + '\n')
  if (previous != null && previous.version !== state.version) await rm(records.manifestOf(previous.version), { force: true })
}

/** Drops the image's packs and manifests no install or resume needs, and says what that freed. */
export async function pruneRecords (records: ImageRecords, logger: AgentLogger, now: { installed?: string, resume?: string }): Promise<void> {
  const keep = {
    manifest: now.installed != null ? `${safeName(now.installed)}.manifest` : undefined,
    pack: now.installed != null && now.resume != null ? `${safeName(now.installed)}..${safeName(now.resume)}.pack` : undefined
  }
  const freed = await pruneImageData({ packsDir: records.packsDir, manifestsDir: records.imageDir }, keep)
  if (freed.packs + freed.manifests > 0) {
    const what = `${freed.packs} delta pack${freed.packs === 1 ? '' : 's'} and ${freed.manifests} manifest${freed.manifests === 1 ? '' : 's'}`
    logger.info(`data dir: removed ${what} of ${records.image} no longer needed (${formatBytes(freed.bytes)} freed)`)
  }
}

/** The summary fields every sync has, whatever it did. */
export function baseSummary (manifest: Manifest, out: string, installedHere: InstalledState | undefined): Omit<SyncSummary, 'upToDate' | 'bytes' | 'seconds'> {
  return {
    image: manifest.name,
    version: manifest.version,
    out,
    size: manifest.size,
    nonZeroBytes: nonZeroBytesOf(manifest),
    fromVersion: installedHere?.version ?? null,
    discardedBlocks: 0,
    discardedChunks: 0,
    chunksFetched: 0,
    blocksBySource: {},
    usedDeltaPack: false
  }
}
