/**
 * `coordinator fsck`: checks a stopped coordinator's data dir. Re-hashes every
 * stored chunk, finds the chunks each version needs that are damaged or
 * missing, restores them from image files given by the operator (re-chunked
 * with each version's own chunking parameters, every candidate re-hashed), and
 * marks the versions that stay incomplete so the origin neither serves nor
 * advertises them (setVersionIncomplete). A version repaired later is unmarked.
 */
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { scanImage } from '../chunker/image-scan.ts'
import { chunkCid, toHex } from '../protocol/block-id.ts'
import { HashMismatchError, NotFoundError } from '../protocol/errors.ts'
import { BLOCKS_DIR } from './constants.ts'
import { createDirectoryBlockStore } from './directory-block-store.ts'
import { ConfigError } from './errors.ts'
import type { BlockStore } from './interface.ts'
import { readS3BlockStoreMarker } from './s3-block-store-marker.ts'
import { setVersionIncomplete, storedVersions } from './image-service.ts'
import { openMetaStore } from './meta-db.ts'
import type { PostgresConfig } from './meta-store/postgres-config.ts'

/** Options of one fsck run. */
export interface FsckInit {
  /** The coordinator's data dir (the coordinator must be stopped; DataDirLockedError otherwise). */
  dataDir: string
  /** Image files to restore damaged or missing chunks from. */
  repairFrom?: string[]
  /** Called with one line of progress per step. */
  onProgress?: (line: string) => void
  signal?: AbortSignal
  /**
   * The store to check when it is not DATA/blocks (the S3 store of the config's
   * blockStore.s3), with `locate` naming where a chunk lives for the report.
   */
  blockStore?: { store: BlockStore, locate: (cid: CID) => string }
  /** The config's metadata.postgres, when the coordinators keep their metadata there (every coordinator on it must be stopped). */
  postgres?: PostgresConfig
}

/** What fsck found and did, per version. */
export interface FsckVersionReport {
  image: string
  version: string
  chunks: number
  /** Chunk CIDs of the version still damaged or missing after repair. */
  missing: string[]
  complete: boolean
  /** Whether this run changed the version's incomplete mark. */
  markChanged: boolean
}

/** The whole fsck report (`--json` prints it). */
export interface FsckReport {
  chunksChecked: number
  /** Stored chunks whose bytes no longer hash to their name (deleted by fsck: they can never be served); path: the file or object key. */
  damaged: Array<{ cid: string, path: string }>
  /** Chunks some version needs that are not stored (damaged ones included, after their deletion). */
  missing: string[]
  /** Chunks restored from --repair-from images. */
  repaired: string[]
  versions: FsckVersionReport[]
  /** Versions that remain incomplete (marked: never served nor `latest`). */
  incompleteVersions: number
  ok: boolean
}

/**
 * The store fsck checks: the one given, else DATA/blocks. A data dir whose
 * coordinator keeps its chunks in S3 is refused without that store: DATA/blocks
 * is empty there, and every version would be marked incomplete.
 */
async function openStore (init: FsckInit): Promise<{ store: BlockStore, locate: (cid: CID) => string }> {
  if (init.blockStore != null) return init.blockStore
  const s3 = await readS3BlockStoreMarker(init.dataDir)
  if (s3 != null) {
    throw new ConfigError(`the chunks of ${init.dataDir} are in S3 bucket "${s3.bucket}" at ${s3.endpoint}` +
      `: run fsck with --config naming that bucket (blockStore.s3)`)
  }
  const store = await createDirectoryBlockStore({}, { path: join(init.dataDir, BLOCKS_DIR), verifyOnRead: true })
  return { store, locate: (cid) => store.pathOf(cid) }
}

/** Runs fsck over `init.dataDir` (see the module comment). */
export async function runFsck (init: FsckInit): Promise<FsckReport> {
  const progress = init.onProgress ?? (() => {})
  const signal = init.signal
  // The meta db's lock is the coordinator's: opening it first refuses a running coordinator's dir.
  const db = await openMetaStore({ dataDir: init.dataDir, postgres: init.postgres })
  try {
    const { store, locate } = await openStore(init)

    // 1. Re-hash every stored chunk.
    const stored = new Set<string>()
    const damaged: FsckReport['damaged'] = []
    const damagedCids: CID[] = []
    let checked = 0
    for await (const cid of store.list({ signal })) {
      checked++
      try {
        await store.get(cid, { verify: true, signal })
        stored.add(cid.toString())
      } catch (err) {
        if (!(err instanceof HashMismatchError) && !(err instanceof NotFoundError)) throw err
        damaged.push({ cid: cid.toString(), path: locate(cid) })
        damagedCids.push(cid)
      }
    }
    progress(`checked ${checked} stored chunks: ${damaged.length} damaged`)
    // A damaged chunk is useless and would block a repair's put (which skips existing chunks).
    for (const cid of damagedCids) await store.delete(cid, { signal })

    // 2. What each version needs.
    const versions = []
    for await (const v of storedVersions(db)) versions.push(v)
    const needed = new Map<string, Uint8Array>()
    for (const v of versions) for (const c of v.manifest.chunks) needed.set(toHex(c.digest), c.digest)
    const missingHex = new Set([...needed.keys()].filter(hex => !stored.has(chunkCid(needed.get(hex)!).toString())))
    const missingBefore = [...missingHex].map(hex => chunkCid(needed.get(hex)!).toString())
    progress(`${versions.length} versions need ${needed.size} distinct chunks: ${missingHex.size} missing or damaged`)

    // 3. Repair from image files, with every chunking used by a version.
    const repaired: string[] = []
    if (missingHex.size > 0 && (init.repairFrom?.length ?? 0) > 0) {
      const chunkings = new Map(versions.map(v => [JSON.stringify(v.manifest.chunking), v.manifest.chunking]))
      for (const file of init.repairFrom!) {
        for (const chunking of chunkings.values()) {
          if (missingHex.size === 0) break
          for await (const chunk of scanImage(file, { ...chunking, signal })) {
            const hex = toHex(chunk.digest)
            if (!missingHex.has(hex)) continue
            const cid = chunkCid(chunk.digest)
            // put re-hashes the bytes before it writes anything.
            await store.put(cid, new Uint8Array(chunk.bytes), { signal })
            missingHex.delete(hex)
            repaired.push(cid.toString())
            if (missingHex.size === 0) break
          }
        }
        progress(`repair from ${file}: ${repaired.length} chunks restored so far, ${missingHex.size} still missing`)
      }
    }

    // 4. Per version: complete or not, and its mark.
    const reports: FsckVersionReport[] = []
    for (const v of versions) {
      const missing = [...new Set(v.manifest.chunks.map(c => toHex(c.digest)))]
        .filter(hex => missingHex.has(hex))
        .map(hex => chunkCid(needed.get(hex)!).toString())
      const complete = missing.length === 0
      const markChanged = v.incomplete === complete
      if (markChanged) await setVersionIncomplete(db, v.image, v.version, !complete)
      reports.push({ image: v.image, version: v.version, chunks: v.manifest.chunks.length, missing, complete, markChanged })
    }
    const incompleteVersions = reports.filter(r => !r.complete).length
    return {
      chunksChecked: checked,
      damaged,
      missing: missingBefore,
      repaired,
      versions: reports,
      incompleteVersions,
      ok: incompleteVersions === 0
    }
  } finally {
    await db.close()
  }
}
