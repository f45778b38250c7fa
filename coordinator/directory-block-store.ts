/**
 * A BlockStore in a local directory: one file per chunk, named by the hex of
 * its BLAKE3 digest (so `b3sum FILE` prints the file's own name), under two
 * levels of shard directories taken from that hex: `ab/cd/abcd…`.
 *
 * A chunk appears whole or not at all: it is written atomically
 * (utils/atomic-write.ts: a temp file in its shard, fsynced, renamed over its
 * final name, the shard directory fsynced so the rename survives a power cut).
 * A crash leaves at most a temp file (`*.tmp`), which `list` and `get` never
 * see and the next open deletes.
 * One store per directory (the coordinator's data dir lock ensures it): the
 * open-time sweep would delete another live store's temp files.
 */
import { mkdir, readdir, readFile, rm, stat, unlink, utimes } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { fromHex } from 'multiformats/bytes'
import { chunkCid } from '../protocol/block-id.ts'
import { DIGEST_BYTES } from '../protocol/constants.ts'
import { NotFoundError } from '../protocol/errors.ts'
import { checkChunkForPut, chunkDigestHex as digestHex, createSharedWrites, verifyStoredChunk } from './chunk-checks.ts'
import {
  BLOCK_STORE_SCAN_CONCURRENCY, BLOCK_STORE_SHARD_CHARS, BLOCK_STORE_SHARD_LEVELS, BLOCK_STORE_TMP_SUFFIX,
  DEFAULT_BLOCK_STORE_VERIFY_ON_READ
} from './constants.ts'
import type { AbortOptions, BlockStore, Logger } from './interface.ts'
import { syncDir, writeFileAtomic } from '../utils/atomic-write.ts'
import { silentLogger } from '../utils/logger.ts'
import { forEachLimit } from '../utils/worker-pool.ts'

/** What the directory store depends on. */
export interface DirectoryBlockStoreComponents {
  logger?: Logger
}

/** Options of the directory store. */
export interface DirectoryBlockStoreInit {
  /** Root directory of the store (created if missing), e.g. `<data dir>/blocks`. */
  path: string
  /** Re-hash every chunk on `get` unless the call says `verify: false` (default DEFAULT_BLOCK_STORE_VERIFY_ON_READ, on). */
  verifyOnRead?: boolean
}

/** A BlockStore kept in a directory tree. */
export interface DirectoryBlockStore extends BlockStore {
  /** The root directory. */
  readonly path: string
  /** Where the chunk with this CID is (or would be) stored; for fsck reports and tests. */
  pathOf: (cid: CID) => string
}

const HEX_NAME = new RegExp(`^[0-9a-f]{${DIGEST_BYTES * 2}}$`)
const SHARD_NAME = new RegExp(`^[0-9a-f]{${BLOCK_STORE_SHARD_CHARS}}$`)

function isCode (err: unknown, ...codes: string[]): boolean {
  return codes.includes((err as NodeJS.ErrnoException)?.code ?? '')
}

/** Names of the entries of directory `path`; none when it is missing (removed meanwhile) or not a directory. */
async function namesIn (path: string): Promise<string[]> {
  try {
    return await readdir(path)
  } catch (err) {
    if (isCode(err, 'ENOENT', 'ENOTDIR')) return []
    throw err
  }
}

/** Sub-directory names of `path` that look like shards, sorted; none when `path` is missing. */
async function shardNames (path: string): Promise<string[]> {
  return (await namesIn(path)).filter(n => SHARD_NAME.test(n)).sort()
}

/** Every leaf shard directory under `root`, in sorted order. */
async function * leafShards (root: string, signal?: AbortSignal): AsyncGenerator<string> {
  async function * walk (dir: string, level: number): AsyncGenerator<string> {
    for (const name of await shardNames(dir)) {
      signal?.throwIfAborted()
      const sub = join(dir, name)
      if (level === BLOCK_STORE_SHARD_LEVELS) yield sub
      else yield * walk(sub, level + 1)
    }
  }
  yield * walk(root, 1)
}

/** Deletes temp files a crash left in the shards; returns how many. */
async function sweepTempFiles (root: string): Promise<number> {
  let removed = 0
  const shards: string[] = []
  for await (const shard of leafShards(root)) shards.push(shard)
  await forEachLimit(shards, BLOCK_STORE_SCAN_CONCURRENCY, async (shard) => {
    for (const n of await namesIn(shard)) {
      if (!n.endsWith(BLOCK_STORE_TMP_SUFFIX)) continue
      await rm(join(shard, n), { force: true })
      removed++
    }
  })
  return removed
}

/**
 * Opens (creating if needed) a directory block store at `init.path` and
 * deletes temp files left by a crash.
 */
export async function createDirectoryBlockStore (components: DirectoryBlockStoreComponents, init: DirectoryBlockStoreInit): Promise<DirectoryBlockStore> {
  if (typeof init?.path !== 'string' || init.path === '') throw new TypeError('createDirectoryBlockStore needs init.path')
  const root = init.path
  const log = components.logger ?? silentLogger
  const verifyOnRead = init.verifyOnRead ?? DEFAULT_BLOCK_STORE_VERIFY_ON_READ
  await mkdir(root, { recursive: true })
  const info = await stat(root)
  if (!info.isDirectory()) throw new TypeError(`block store path is not a directory: ${root}`)
  const started = Date.now()
  const swept = await sweepTempFiles(root)
  if (swept > 0) log.warn('block store: deleted temp files left by an interrupted write', { path: root, files: swept, ms: Date.now() - started })

  /** Puts of the same chunk in flight in this process share one write. */
  const shared = createSharedWrites()

  const pathOfHex = (hex: string): string => {
    const parts: string[] = [root]
    for (let l = 0; l < BLOCK_STORE_SHARD_LEVELS; l++) parts.push(hex.slice(l * BLOCK_STORE_SHARD_CHARS, (l + 1) * BLOCK_STORE_SHARD_CHARS))
    parts.push(hex)
    return join(...parts)
  }

  const exists = async (file: string): Promise<boolean> => {
    try {
      return (await stat(file)).isFile()
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR')) return false
      throw err
    }
  }

  const touchFile = async (file: string): Promise<void> => {
    const now = new Date()
    try {
      await utimes(file, now, now)
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR')) throw new NotFoundError('chunk is not in the block store')
      throw err
    }
  }

  /** Writes one chunk. Takes no signal: it may be shared by several callers, and one aborting must not fail the others. */
  const write = async (hex: string, bytes: Uint8Array): Promise<void> => {
    const file = pathOfHex(hex)
    if (await exists(file)) {
      // a publish re-using a stored chunk claims it: storage gc's grace period counts from now
      await touchFile(file).catch((err: unknown) => { if (!(err instanceof NotFoundError)) throw err })
      if (await exists(file)) return
    }
    const shard = dirname(file)
    const created = await mkdir(shard, { recursive: true })
    if (created != null) {
      // New shard directories must be durable too, or the chunk's rename could vanish with them.
      for (let d = shard; d.length > root.length && d.length >= created.length; d = dirname(d)) await syncDir(dirname(d))
    }
    await writeFileAtomic(file, bytes) // its temp file ends in BLOCK_STORE_TMP_SUFFIX, which the open-time sweep deletes
  }

  const store: DirectoryBlockStore = {
    path: root,

    pathOf: (cid) => pathOfHex(digestHex(cid)),

    async has (cid, options: AbortOptions = {}) {
      const hex = digestHex(cid)
      options.signal?.throwIfAborted()
      return await exists(pathOfHex(hex))
    },

    async get (cid, options: AbortOptions & { verify?: boolean } = {}) {
      const hex = digestHex(cid)
      const file = pathOfHex(hex)
      let bytes: Uint8Array
      try {
        bytes = new Uint8Array(await readFile(file, { signal: options.signal }))
      } catch (err) {
        if (isCode(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw new NotFoundError(`chunk ${cid.toString()} is not in the block store`)
        throw err
      }
      if (options.verify ?? verifyOnRead) {
        verifyStoredChunk(cid, bytes, () => { log.error('block store: stored chunk is corrupt', { cid: cid.toString(), path: file }) })
      }
      return bytes
    },

    async put (cid, bytes, options: AbortOptions = {}) {
      const hex = digestHex(cid)
      options.signal?.throwIfAborted()
      // Re-hash before anything touches the disk: a mismatch stores nothing.
      checkChunkForPut(cid, bytes)
      await shared(hex, async () => { await write(hex, bytes) })
    },

    async delete (cid, options: AbortOptions = {}) {
      const hex = digestHex(cid)
      options.signal?.throwIfAborted()
      const file = pathOfHex(hex)
      try {
        await unlink(file)
      } catch (err) {
        if (isCode(err, 'ENOENT', 'ENOTDIR')) return
        throw err
      }
      await syncDir(dirname(file))
    },

    async stat (cid, options: AbortOptions = {}) {
      const hex = digestHex(cid)
      options.signal?.throwIfAborted()
      try {
        const st = await stat(pathOfHex(hex))
        return { bytes: st.size, storedAt: st.mtimeMs }
      } catch (err) {
        if (isCode(err, 'ENOENT', 'ENOTDIR')) throw new NotFoundError(`chunk ${cid.toString()} is not in the block store`)
        throw err
      }
    },

    async touch (cid, options: AbortOptions = {}) {
      const hex = digestHex(cid)
      options.signal?.throwIfAborted()
      try {
        await touchFile(pathOfHex(hex))
      } catch (err) {
        if (err instanceof NotFoundError) throw new NotFoundError(`chunk ${cid.toString()} is not in the block store`)
        throw err
      }
    },

    async * list (options: AbortOptions = {}) {
      for await (const shard of leafShards(root, options.signal)) {
        const names = await namesIn(shard)
        const prefix = shard.slice(root.length).split(/[\\/]/).join('')
        for (const n of names.sort()) {
          // Temp files and anything else that is not a chunk in its right shard are not chunks.
          if (!HEX_NAME.test(n) || !n.startsWith(prefix)) continue
          options.signal?.throwIfAborted()
          yield chunkCid(fromHex(n))
        }
      }
    }
  }
  return store
}

