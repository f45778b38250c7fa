/**
 * The host index (Trim Transfer): a level database mapping the BLAKE3 prefix of
 * every non-zero 4 KiB-aligned block of every regular file in the indexed
 * folders to (file, block offset). A file's last partial block is zero-padded,
 * as the bound in FACTS.md counts it (ext4 stores it padded the same way).
 *
 * Keys (binary, one tag byte first):
 *   0x01 fileId(4)                      -> JSON { path, size, mtimeMs, ino, dev }   file table
 *   0x02 prefix(8) fileId(4) block(4)   -> empty                                     block entries
 *   0x03 fileId(4)                      -> (prefix(8) block(4))*                     a file's entries, to drop them
 *   0x04 'next-id'                      -> uint32                                    id allocator
 *   0x05 'table-generation'             -> 16 random bytes                           generation of blocks.table
 * A file's entries, its entry list and its record are written in one batch, so
 * a crash leaves either the old or the new state of that file.
 *
 * Lookups read the block entries from blocks.table (index-block-table.ts), a
 * sorted copy written at the end of every refresh that changed the index; a
 * refresh cut short leaves a table of an older generation, which is not used
 * (lookups seek level instead) until the next refresh writes it anew.
 */
import { randomBytes } from 'node:crypto'
import { lstatSync, readdirSync, type Stats } from 'node:fs'
import { join, resolve } from 'node:path'
import { setImmediate as yieldLoop } from 'node:timers/promises'
import { Level } from 'level'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { INDEX_BATCH_ENTRIES, INDEX_CONCURRENCY, INDEX_MAX_CANDIDATES, INDEX_READ_BYTES, INDEX_TABLE_MERGE_MAX_ENTRIES } from './constants.ts'
import {
  type BlockTable, compareBytesAt, ENTRY_BYTES, GENERATION_BYTES, mergeEntries, openBlockTable, sortEntries, writeBlockTable
} from './index-block-table.ts'
import {
  BLOCK_KEY_BYTES, blockKey, fileKey, hashFileBlocks, LIST_ENTRY_BYTES, noteAdded, TAG_BLOCK, TAG_FILE, TAG_FILE_BLOCKS, type TableChange
} from './index-keys.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { mkdirPrivate } from './private-files.ts'
import type { RefreshStats } from './index-stats.ts'
import { forEachLimit } from '../utils/worker-pool.ts'

/** Where a candidate copy of a block may be on this host. */
export interface BlockLocation {
  path: string
  /** Byte offset of the block in the file (a multiple of BLOCK_SIZE). */
  offset: number
  /** File size when indexed: the block at the end may be shorter (zero-padded). */
  size: number
}

// what a refresh did and its one line for people: level-free, for the sync's log (index-stats.ts)
export { describeRefresh, type RefreshStats } from './index-stats.ts'

/** The host index of one agent. */
export interface HostIndex {
  /** Folders being indexed (absolute). */
  readonly folders: string[]
  /** Opens the database and the block table (the file table is read as needed). */
  open: () => Promise<void>
  /** Brings the index up to date with the folders: new and changed files hashed, deleted ones dropped. */
  refresh: (options?: AbortOptions & { onProgress?: (s: RefreshStats) => void }) => Promise<RefreshStats>
  /**
   * True once open when the table of a completed refresh is in place: lookups then answer
   * as of that refresh, fast. False before a first refresh completed, or after one was cut short.
   */
  isReady: () => boolean
  /** Candidate locations of a block with this 8-byte prefix (not verified: re-read and re-hash before use). */
  lookup: (prefix: Uint8Array) => Promise<BlockLocation[]>
  /** Candidates of many prefixes through one iterator (sorted seeks): far less native memory than one iterator each. */
  lookupMany: (prefixes: Uint8Array[]) => Promise<BlockLocation[][]>
  close: () => Promise<void>
}

/** Dependencies of the host index. */
export interface HostIndexComponents {
  logger: AgentLogger
}

/** Options of the host index. */
export interface HostIndexInit {
  /** Directory of the level database. */
  dbPath: string
  folders: string[]
  /** Candidates per lookup (default INDEX_MAX_CANDIDATES). */
  maxCandidates?: number
  /** Bytes per read (default INDEX_READ_BYTES). */
  readBytes?: number
  concurrency?: number
  /** New block entries a refresh merges into the table in memory (default INDEX_TABLE_MERGE_MAX_ENTRIES); past it the table is rewritten from level. */
  tableMergeMaxEntries?: number
}

interface FileStat {
  size: number
  mtimeMs: number
  ino: number
  dev: number
}

interface FileRecord {
  path: string
  size: number
  mtimeMs: number
  ino: number
  dev: number
}

const NEXT_ID_KEY = Uint8Array.from([4, ...new TextEncoder().encode('next-id')])
const GENERATION_KEY = Uint8Array.from([5, ...new TextEncoder().encode('table-generation')])
const TABLE_FILE = 'blocks.table'
const EMPTY = new Uint8Array(0)

const enc = new TextEncoder()
const dec = new TextDecoder()

type Op = { type: 'put', key: Uint8Array, value: Uint8Array } | { type: 'del', key: Uint8Array }

/** Creates the host index over `init.folders`, stored at `init.dbPath`. */
export function createHostIndex (components: HostIndexComponents, init: HostIndexInit): HostIndex {
  const folders = [...new Set(init.folders.map(f => resolve(f)))]
  const maxCandidates = init.maxCandidates ?? INDEX_MAX_CANDIDATES
  const readBytes = Math.max(BLOCK_SIZE, Math.floor((init.readBytes ?? INDEX_READ_BYTES) / BLOCK_SIZE) * BLOCK_SIZE)
  const concurrency = init.concurrency ?? INDEX_CONCURRENCY
  const tableMergeMax = init.tableMergeMaxEntries ?? INDEX_TABLE_MERGE_MAX_ENTRIES
  const { logger } = components
  const db = new Level<Uint8Array, Uint8Array>(init.dbPath, { keyEncoding: 'view', valueEncoding: 'view' })
  const byId = new Map<number, FileRecord>()
  const byPath = new Map<string, number>()
  let nextId = 1
  let opened = false
  // true: byId and byPath hold the whole file table (a refresh loaded it); false: byId caches the records lookups read
  let filesLoaded = false
  let table: BlockTable | undefined
  const tablePath = join(init.dbPath, TABLE_FILE)

  async function loadTable (): Promise<void> {
    byId.clear()
    byPath.clear()
    // the whole table in few big reads (one small read per record took seconds for 124k files)
    const it = db.iterator<Uint8Array, Uint8Array>({ gte: fileKey(TAG_FILE, 0), lte: fileKey(TAG_FILE, 0xffffffff), highWaterMarkBytes: 4 * 1024 * 1024 })
    try {
      for (;;) {
        const entries = await it.nextv(16_384)
        if (entries.length === 0) break
        for (const [k, v] of entries) {
          const id = new DataView(k.buffer, k.byteOffset, k.byteLength).getUint32(1)
          const rec = JSON.parse(dec.decode(v)) as FileRecord
          byId.set(id, rec)
          byPath.set(rec.path, id)
        }
      }
    } finally {
      await it.close()
    }
    const v = await getOptional(NEXT_ID_KEY)
    if (v != null) nextId = new DataView(v.buffer, v.byteOffset, v.byteLength).getUint32(0)
    for (const id of byId.keys()) nextId = Math.max(nextId, id + 1)
  }

  async function getOptional (key: Uint8Array): Promise<Uint8Array | undefined> {
    try { return (await db.get(key)) ?? undefined } catch { return undefined }
  }

  /** A new table generation, in level before any block entry changes (a table of the old one is then stale). */
  async function newGeneration (): Promise<Uint8Array> {
    const generation = new Uint8Array(randomBytes(GENERATION_BYTES))
    await db.put(GENERATION_KEY, generation)
    return generation
  }

  /** Every block entry in level, in order, packed (the table rebuilt from scratch). */
  async function * levelEntries (): AsyncGenerator<Uint8Array> {
    const it = db.keys({ gte: Uint8Array.of(TAG_BLOCK), lt: Uint8Array.of(TAG_BLOCK + 1), highWaterMarkBytes: 4 * 1024 * 1024 })
    try {
      for (;;) {
        const keys = await it.nextv(16_384)
        if (keys.length === 0) break
        const piece = new Uint8Array(keys.length * ENTRY_BYTES)
        for (let i = 0; i < keys.length; i++) piece.set(keys[i].subarray(1, 1 + ENTRY_BYTES), i * ENTRY_BYTES)
        yield piece
      }
    } finally {
      await it.close()
    }
  }

  /**
   * Writes blocks.table of `generation`: the old table merged with what the refresh
   * changed, or (no usable table, or too many changes to hold) every entry from level.
   */
  async function rewriteTable (generation: Uint8Array, change: TableChange, base: BlockTable | undefined): Promise<BlockTable | undefined> {
    const pieces = base != null && change.added != null
      ? mergeEntries(base.entries(), change.dropped, sortEntries(Buffer.concat(change.added)))
      : levelEntries()
    try {
      await writeBlockTable(tablePath, generation, pieces)
    } catch (err) {
      logger.warn(`index: cannot write ${tablePath}: ${(err as Error).message} (lookups read the database instead, slower)`)
    }
    return openBlockTable(tablePath, generation)
  }

  /** Delete ops for a file's entries and record. */
  async function dropOps (id: number): Promise<Op[]> {
    const ops: Op[] = [{ type: 'del', key: fileKey(TAG_FILE, id) }, { type: 'del', key: fileKey(TAG_FILE_BLOCKS, id) }]
    let list: Uint8Array | undefined
    try { list = await db.get(fileKey(TAG_FILE_BLOCKS, id)) } catch {}
    if (list != null) {
      const dv = new DataView(list.buffer, list.byteOffset, list.byteLength)
      for (let at = 0; at + BLOCK_PREFIX_BYTES + 4 <= list.length; at += BLOCK_PREFIX_BYTES + 4) {
        ops.push({ type: 'del', key: blockKey(list.subarray(at, at + BLOCK_PREFIX_BYTES), id, dv.getUint32(at + BLOCK_PREFIX_BYTES)) })
      }
    }
    return ops
  }

  /** Walks the folders (no symlinks followed, special files skipped) and yields regular files with their stats. */
  function * walk (stats: RefreshStats): Generator<[string, Stats]> {
    // numbers, not strings: 124k entries stay small
    const seenInodes = new Map<number, Set<number>>()
    for (const root of folders) {
      const stack = [root]
      while (stack.length > 0) {
        const dir = stack.pop()!
        let entries
        try {
          entries = readdirSync(dir, { withFileTypes: true })
        } catch (err) {
          stats.warnings++
          logger.warn(`index: cannot read folder ${dir}: ${(err as Error).message} (skipped)`)
          continue
        }
        for (const e of entries) {
          const p = join(dir, e.name)
          if (e.isDirectory()) {
            stack.push(p)
          } else if (e.isFile()) {
            let st: Stats
            try { st = lstatSync(p) } catch { continue } // vanished between readdir and stat
            if (!st.isFile()) continue
            let onDev = seenInodes.get(st.dev)
            if (onDev == null) { onDev = new Set(); seenInodes.set(st.dev, onDev) }
            if (onDev.has(st.ino)) continue // hard link (or folder listed twice): index once
            onDev.add(st.ino)
            yield [p, st]
          }
          // symlinks, sockets, fifos, devices: not indexed (a symlink's in-tree target is indexed as itself)
        }
      }
    }
  }

  /**
   * The records of the files `found` names, read into byId unless the whole table is loaded:
   * a sync reads only the files its candidates are in, not all 126k (0.6 CPU-s at start).
   */
  async function readRecords (found: number[][]): Promise<void> {
    if (filesLoaded) return
    const ids = new Set<number>()
    for (const pairs of found) for (let k = 0; k < pairs.length; k += 2) if (!byId.has(pairs[k])) ids.add(pairs[k])
    if (ids.size === 0) return
    const wanted = [...ids]
    const values = await db.getMany(wanted.map(id => fileKey(TAG_FILE, id)))
    for (let i = 0; i < wanted.length; i++) {
      const v = values[i]
      if (v != null) byId.set(wanted[i], JSON.parse(dec.decode(v)) as FileRecord)
    }
  }

  /** Lookups without a table: one level seek per prefix (sorted, one iterator). */
  async function lookupInLevel (prefixes: Uint8Array[], order: number[], take: (i: number, fileId: number, block: number) => boolean): Promise<void> {
    const it = db.keys({ gte: Uint8Array.of(TAG_BLOCK), lt: Uint8Array.of(TAG_BLOCK + 1) })
    try {
      const target = new Uint8Array(1 + BLOCK_PREFIX_BYTES)
      target[0] = TAG_BLOCK
      for (const i of order) {
        const prefix = prefixes[i]
        target.set(prefix.subarray(0, BLOCK_PREFIX_BYTES), 1)
        it.seek(target)
        for (const k of await it.nextv(maxCandidates * 2)) {
          if (compareBytesAt(k, 1, prefix, 0, BLOCK_PREFIX_BYTES) !== 0) break
          const dv = new DataView(k.buffer, k.byteOffset, k.byteLength)
          if (!take(i, dv.getUint32(1 + BLOCK_PREFIX_BYTES), dv.getUint32(5 + BLOCK_PREFIX_BYTES))) break
        }
      }
    } finally {
      await it.close()
    }
  }

  const index: HostIndex = {
    folders,
    async open () {
      if (opened) return
      await mkdirPrivate(init.dbPath) // level creates its files with the umask's mode: the dir keeps them private
      await db.open()
      table = openBlockTable(tablePath, await getOptional(GENERATION_KEY))
      opened = true
    },

    async refresh (options = {}) {
      await index.open()
      if (!filesLoaded) {
        await loadTable()
        filesLoaded = true
      }
      const started = performance.now()
      const stats: RefreshStats = { files: 0, unchanged: 0, hashed: 0, removed: 0, bytesHashed: 0, blocks: 0, warnings: 0, seconds: 0 }
      for (const f of folders) {
        try { lstatSync(f) } catch (err) {
          stats.warnings++
          logger.warn(`index: folder ${f} is not available: ${(err as Error).message} (skipped)`)
        }
      }
      const seen = new Set<number>()
      // only what hashing needs: whole Stats objects for 124k files cost tens of MB
      const todo: Array<{ path: string, st: FileStat, oldId?: number }> = []
      let n = 0
      for (const [path, st] of walk(stats)) {
        stats.files++
        const id = byPath.get(path)
        const rec = id == null ? undefined : byId.get(id)
        if (id != null && rec != null && rec.size === st.size && rec.mtimeMs === st.mtimeMs && rec.ino === st.ino && rec.dev === st.dev) {
          seen.add(id)
          stats.unchanged++
        } else {
          if (id != null) seen.add(id)
          todo.push({ path, st: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }, oldId: id })
        }
        if (++n % 4096 === 0) {
          options.signal?.throwIfAborted()
          await yieldLoop()
        }
      }
      // a change to the block entries makes the table stale: a new generation first
      const changes = todo.length > 0 || seen.size < byId.size
      // from here lookups must not trust the old table (it only feeds the merge), also if this refresh fails
      const base = table
      if (changes) table = undefined
      const generation = changes ? await newGeneration() : undefined
      try {
        const change: TableChange = { dropped: new Set(), added: [], addedEntries: 0 }
        // files gone (deleted, folder vanished or no longer indexed): drop them and their entries
        let pending: Op[] = []
        const flush = async (): Promise<void> => {
          if (pending.length === 0) return
          const ops = pending
          pending = []
          await db.batch(ops)
        }
        for (const [id, rec] of byId) {
          if (seen.has(id)) continue
          change.dropped.add(id)
          for (const op of await dropOps(id)) pending.push(op)
          byId.delete(id)
          if (byPath.get(rec.path) === id) byPath.delete(rec.path)
          stats.removed++
          if (pending.length >= INDEX_BATCH_ENTRIES) await flush()
        }
        await flush()

        // hash new and changed files, INDEX_CONCURRENCY at a time, with one read buffer per worker
        let sinceYield = 0
        const scratch: Array<{ buf: Uint8Array, digests: Uint8Array }> = []
        await forEachLimit(todo, concurrency, async (item, _i, worker) => {
          scratch[worker] ??= { buf: new Uint8Array(readBytes), digests: new Uint8Array(readBytes / BLOCK_SIZE * DIGEST_BYTES) }
          const ops: Op[] = item.oldId != null ? await dropOps(item.oldId) : []
          if (item.oldId != null) change.dropped.add(item.oldId)
          const id = item.oldId ?? nextId++
          try {
            const { keys, listBytes, count, bytes } = hashFileBlocks(item.path, item.st.size, id, scratch[worker])
            stats.bytesHashed += bytes
            // the file changed while being read: index what we read, the next refresh sees the new mtime
            const rec: FileRecord = { path: item.path, size: item.st.size, mtimeMs: item.st.mtimeMs, ino: item.st.ino, dev: item.st.dev }
            for (let i = 0; i < count; i++) ops.push({ type: 'put', key: keys.subarray(i * BLOCK_KEY_BYTES, (i + 1) * BLOCK_KEY_BYTES), value: EMPTY })
            noteAdded(change, keys, count, tableMergeMax)
            ops.push({ type: 'put', key: fileKey(TAG_FILE_BLOCKS, id), value: listBytes.slice(0, count * LIST_ENTRY_BYTES) })
            ops.push({ type: 'put', key: fileKey(TAG_FILE, id), value: enc.encode(JSON.stringify(rec)) })
            byId.set(id, rec)
            byPath.set(item.path, id)
            stats.hashed++
            stats.blocks += count
          } catch (err) {
            stats.warnings++
            logger.warn(`index: cannot read ${item.path}: ${(err as Error).message} (skipped)`)
            if (item.oldId != null) {
              byId.delete(item.oldId)
              byPath.delete(item.path)
            }
          }
          for (const op of ops) pending.push(op)
          if (pending.length >= INDEX_BATCH_ENTRIES) await flush()
          else if (++sinceYield >= 256) { sinceYield = 0; await yieldLoop() }
          options.onProgress?.(stats)
        }, options)
        const idBytes = new Uint8Array(4)
        new DataView(idBytes.buffer).setUint32(0, nextId)
        pending.push({ type: 'put', key: NEXT_ID_KEY, value: idBytes })
        await flush()
        if (generation != null || base == null) table = await rewriteTable(generation ?? await newGeneration(), change, base)
      } finally {
        if (base != null && base !== table) base.close()
      }
      stats.seconds = (performance.now() - started) / 1000
      return stats
    },

    isReady () {
      return table != null
    },

    async lookup (prefix) {
      return (await index.lookupMany([prefix]))[0]
    },

    async lookupMany (prefixes) {
      if (!opened) await index.open()
      const order = prefixes.map((_, i) => i).sort((a, b) => compareBytesAt(prefixes[a], 0, prefixes[b], 0, BLOCK_PREFIX_BYTES))
      const found: number[][] = prefixes.map(() => []) // file id, block, file id, block ...
      const take = (i: number, fileId: number, block: number): boolean => { found[i].push(fileId, block); return true }
      if (table != null) table.lookup(prefixes, order, maxCandidates * 2, take)
      else await lookupInLevel(prefixes, order, take)
      await readRecords(found)
      return found.map(pairs => {
        const locations: BlockLocation[] = []
        for (let k = 0; k < pairs.length && locations.length < maxCandidates; k += 2) {
          const rec = byId.get(pairs[k])
          if (rec != null) locations.push({ path: rec.path, offset: pairs[k + 1] * BLOCK_SIZE, size: rec.size }) // else: a file being replaced
        }
        return locations
      })
    },

    async close () {
      opened = false
      filesLoaded = false
      table?.close()
      table = undefined
      byId.clear()
      byPath.clear()
      await db.close()
    }
  }
  return index
}
