/**
 * The host index's sorted block table (peer-agent/index-block-table.ts): merge
 * and page lookups on their own, then through the host index on real files,
 * always against the level database it mirrors (the table deleted: lookups
 * seek level), including a table left behind by a refresh cut short.
 */
import { copyFile, mkdir, rm, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashBlocks } from '../../chunker/blake3.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../../protocol/constants.ts'
import { createHostIndex, type HostIndex } from '../../peer-agent/host-index.ts'
import { ENTRY_BYTES, mergeEntries, openBlockTable, sortEntries, writeBlockTable } from '../../peer-agent/index-block-table.ts'
import type { AgentLogger } from '../../peer-agent/interface.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
beforeAll(async () => { tmp = await tempDir('trimswarm-table-') })
afterAll(async () => { await tmp?.cleanup() })

const logger: AgentLogger = { info: () => {}, warn: () => {} }

/** One packed entry: an 8-byte prefix from `p` (big-endian in the last 4 bytes), file id, block. */
function entry (p: number, fileId: number, block: number): Uint8Array {
  const e = new Uint8Array(ENTRY_BYTES)
  const dv = new DataView(e.buffer)
  dv.setUint32(4, p)
  dv.setUint32(BLOCK_PREFIX_BYTES, fileId)
  dv.setUint32(BLOCK_PREFIX_BYTES + 4, block)
  return e
}

function prefix (p: number): Uint8Array {
  return entry(p, 0, 0).subarray(0, BLOCK_PREFIX_BYTES)
}

function unpack (pieces: Iterable<Uint8Array>): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = []
  for (const piece of pieces) {
    const dv = new DataView(piece.buffer, piece.byteOffset, piece.byteLength)
    for (let at = 0; at < piece.length; at += ENTRY_BYTES) out.push([dv.getUint32(at + 4), dv.getUint32(at + BLOCK_PREFIX_BYTES), dv.getUint32(at + BLOCK_PREFIX_BYTES + 4)])
  }
  return out
}

const GEN = new Uint8Array(16).fill(7)

describe('block table', () => {
  it('merges: old entries of dropped files leave, added ones come in order', () => {
    const old = Buffer.concat([entry(1, 1, 0), entry(3, 2, 0), entry(5, 1, 1), entry(9, 3, 0)])
    const added = sortEntries(Buffer.concat([entry(8, 4, 0), entry(0, 4, 1), entry(3, 1, 0)]))
    expect(unpack(mergeEntries([old], new Set([1]), added))).toEqual([[0, 4, 1], [3, 1, 0], [3, 2, 0], [8, 4, 0], [9, 3, 0]])
  })

  it('finds every entry of a prefix whose run crosses pages, up to the limit, and none of absent prefixes', async () => {
    // 300 entries of prefix 10 from index 200 on: they span pages 0..1 (256 entries a page), and page 1 starts with prefix 10
    const parts: Uint8Array[] = []
    for (let i = 0; i < 200; i++) parts.push(entry(2 * i < 10 ? 2 * i : 2 * i + 100, 1, i)) // even prefixes, none is 10
    for (let i = 0; i < 300; i++) parts.push(entry(10, 2, i))
    const sorted = sortEntries(Buffer.concat(parts))
    const path = join(tmp.path, 'pages.table')
    expect(await writeBlockTable(path, GEN, [sorted.subarray(0, 1000 * ENTRY_BYTES), sorted.subarray(1000 * ENTRY_BYTES)])).toBe(500)
    const table = openBlockTable(path, GEN)!
    expect(table.count).toBe(500)
    const asked = [prefix(10), prefix(4), prefix(11), prefix(498), prefix(0xffffffff)]
    const got: number[][] = asked.map(() => [])
    table.lookup(asked, [1, 0, 2, 3, 4], 1000, (i, fileId, block) => { got[i].push(fileId * 1000 + block); return true })
    expect(got[0]).toEqual(Array.from({ length: 300 }, (_, i) => 2000 + i))
    expect(got[1]).toEqual([1002])
    expect(got[2]).toEqual([])
    expect(got[3]).toEqual([1199])
    expect(got[4]).toEqual([])
    const limited: number[] = []
    table.lookup([prefix(10)], [0], 4, (_i, _f, block) => { limited.push(block); return true })
    expect(limited).toEqual([0, 1, 2, 3])
    expect(unpack(table.entries())).toEqual(unpack([sorted]))
    table.close()
  })

  it('answers many prefixes (pages read many at a time) as one at a time and as a scan of every entry', async () => {
    // 200 pages: more than three reads of 64 pages; runs of equal prefixes cross page and read boundaries
    const parts: Uint8Array[] = []
    for (let i = 0; i < 51_200; i++) parts.push(entry(Math.floor(i / 3) * 2, i % 7, i))
    const sorted = sortEntries(Buffer.concat(parts))
    const path = join(tmp.path, 'many.table')
    await writeBlockTable(path, GEN, [sorted])
    const table = openBlockTable(path, GEN)!
    const asked = Array.from({ length: 6000 }, (_, k) => prefix((k * 7919) % 34_200)) // odd ones absent, some past the end
    const order = asked.map((_, i) => i).sort((a, b) => new DataView(asked[a].buffer).getUint32(4) - new DataView(asked[b].buffer).getUint32(4))
    const many: number[][] = asked.map(() => [])
    table.lookup(asked, order, 2, (i, _f, block) => { many[i].push(block); return true })
    const scan = new Map<number, number[]>()
    for (const [p, , block] of unpack([sorted])) scan.set(p, [...(scan.get(p) ?? []), block])
    for (const [i, p] of asked.entries()) {
      const one: number[] = []
      table.lookup([p], [0], 2, (_i, _f, block) => { one.push(block); return true })
      const want = (scan.get(new DataView(p.buffer).getUint32(4)) ?? []).slice(0, 2)
      expect(many[i]).toEqual(want)
      expect(one).toEqual(want)
    }
    expect(many.filter(b => b.length > 0).length).toBeGreaterThan(1000)
    table.close()
  })

  it('is not opened when of another generation, cut short, or not a table', async () => {
    const path = join(tmp.path, 'bad.table')
    await writeBlockTable(path, GEN, [sortEntries(Buffer.concat([entry(1, 1, 0), entry(2, 1, 1)]))])
    expect(openBlockTable(path, new Uint8Array(16))).toBeUndefined()
    expect(openBlockTable(path, undefined)).toBeUndefined()
    openBlockTable(path, GEN)!.close()
    await truncate(path, 40)
    expect(openBlockTable(path, GEN)).toBeUndefined()
    await writeFile(path, 'not a table at all, just text of some length')
    expect(openBlockTable(path, GEN)).toBeUndefined()
    expect(openBlockTable(join(tmp.path, 'absent.table'), GEN)).toBeUndefined()
  })
})

describe('host index lookups through the table', () => {
  function prefixesOf (bytes: Uint8Array): Uint8Array[] {
    const padded = new Uint8Array(Math.ceil(bytes.length / BLOCK_SIZE) * BLOCK_SIZE)
    padded.set(bytes)
    const digests = hashBlocks(padded)
    return Array.from({ length: padded.length / BLOCK_SIZE }, (_, i) => digests.subarray(i * 32, i * 32 + BLOCK_PREFIX_BYTES))
  }

  /** Lookups of `asked` through the table, then through level alone (the table moved away and back). */
  async function bothWays (dbPath: string, folders: string[], asked: Uint8Array[]): Promise<{ table: unknown, level: unknown }> {
    let idx: HostIndex = createHostIndex({ logger }, { dbPath, folders })
    await idx.open()
    const table = await idx.lookupMany(asked)
    await idx.close()
    const file = join(dbPath, 'blocks.table')
    await copyFile(file, `${file}.kept`)
    await rm(file)
    idx = createHostIndex({ logger }, { dbPath, folders })
    const level = await idx.lookupMany(asked)
    await idx.close()
    await copyFile(`${file}.kept`, file)
    return { table, level }
  }

  it('answers as level does after a build, after changes merged in, and after changes past the merge limit', async () => {
    const root = join(tmp.path, 'files')
    await mkdir(root, { recursive: true })
    const a = seededBytes(11, 40 * BLOCK_SIZE)
    const b = seededBytes(12, 7 * BLOCK_SIZE + 5)
    await writeFile(join(root, 'a.bin'), a)
    await writeFile(join(root, 'b.bin'), b)
    await writeFile(join(root, 'a-copy.bin'), a) // the same blocks in two files
    const db = join(tmp.path, 'db')
    const idx = createHostIndex({ logger }, { dbPath: db, folders: [root], tableMergeMaxEntries: 60 })
    await idx.refresh()
    await idx.close()
    const c = seededBytes(13, 20 * BLOCK_SIZE)
    const asked = [...prefixesOf(a), ...prefixesOf(b), ...prefixesOf(c), prefixesOf(new Uint8Array(BLOCK_SIZE))[0]]
    let r = await bothWays(db, [root], asked)
    expect(r.table).toEqual(r.level)
    expect((r.table as unknown[][]).filter(x => x.length > 0).length).toBe(40 + 8)

    // merged: b deleted, c added (20 entries, under the limit of 60)
    await rm(join(root, 'b.bin'))
    await writeFile(join(root, 'c.bin'), c)
    const idx2 = createHostIndex({ logger }, { dbPath: db, folders: [root], tableMergeMaxEntries: 60 })
    expect(await idx2.refresh()).toMatchObject({ hashed: 1, removed: 1 })
    await idx2.close()
    r = await bothWays(db, [root], asked)
    expect(r.table).toEqual(r.level)
    expect((r.table as unknown[][]).filter(x => x.length > 0).length).toBe(40 + 20)

    // past the limit: a rewritten with other bytes (40 + 40 entries) -> the table is rewritten from level
    await writeFile(join(root, 'a.bin'), seededBytes(14, 40 * BLOCK_SIZE))
    await writeFile(join(root, 'a-copy.bin'), seededBytes(15, 40 * BLOCK_SIZE))
    const idx3 = createHostIndex({ logger }, { dbPath: db, folders: [root], tableMergeMaxEntries: 60 })
    expect(await idx3.refresh()).toMatchObject({ hashed: 2 })
    await idx3.close()
    r = await bothWays(db, [root], asked)
    expect(r.table).toEqual(r.level)
    expect((r.table as unknown[][]).filter(x => x.length > 0).length).toBe(20) // only c's blocks are left
  })

  it('does not use a table a refresh left behind when it was cut short before writing a new one', async () => {
    const root = join(tmp.path, 'stale')
    await mkdir(root, { recursive: true })
    const first = seededBytes(21, 8 * BLOCK_SIZE)
    await writeFile(join(root, 'f.bin'), first)
    const db = join(tmp.path, 'db-stale')
    const idx = createHostIndex({ logger }, { dbPath: db, folders: [root] })
    await idx.refresh()
    await idx.close()
    const file = join(db, 'blocks.table')
    await copyFile(file, join(tmp.path, 'old.table'))
    const second = seededBytes(22, 8 * BLOCK_SIZE)
    await writeFile(join(root, 'f.bin'), second)
    const idx2 = createHostIndex({ logger }, { dbPath: db, folders: [root] })
    await idx2.refresh()
    await idx2.close()
    // as if the refresh had stopped after changing level, before its table was written
    await copyFile(join(tmp.path, 'old.table'), file)
    const idx3 = createHostIndex({ logger }, { dbPath: db, folders: [root] })
    const found = await idx3.lookupMany([...prefixesOf(first), ...prefixesOf(second)])
    expect(found.slice(0, 8).every(c => c.length === 0)).toBe(true) // the old bytes are gone from the index
    expect(found.slice(8).every(c => c.length === 1 && c[0].path === join(root, 'f.bin'))).toBe(true)
    // and the next refresh, though nothing changed, writes a table of the database's generation
    await idx3.refresh()
    await idx3.close()
    const r = await bothWays(db, [root], [...prefixesOf(first), ...prefixesOf(second)])
    expect(r.table).toEqual(r.level)
    expect(r.table).toEqual(found)
  })

  it('stops using its table once a refresh that changes the index fails, in the same process and the next', async () => {
    const root = join(tmp.path, 'cut')
    await mkdir(join(root, 'sub'), { recursive: true })
    const first = seededBytes(31, 8 * BLOCK_SIZE)
    await writeFile(join(root, 'f.bin'), first)
    const db = join(tmp.path, 'db-cut')
    const idx = createHostIndex({ logger }, { dbPath: db, folders: [root] })
    await idx.refresh()
    expect(idx.isReady()).toBe(true)
    // f.bin changes (hashed first: files of a folder come before its subfolders), then more files to hash
    await writeFile(join(root, 'f.bin'), seededBytes(32, 8 * BLOCK_SIZE))
    for (let i = 0; i < 5; i++) await writeFile(join(root, 'sub', `g${i}.bin`), seededBytes(40 + i, 4 * BLOCK_SIZE))
    const stop = new AbortController()
    await expect(idx.refresh({ signal: stop.signal, onProgress: (st) => { if (st.hashed >= 1) stop.abort() } })).rejects.toThrow()
    expect(idx.isReady()).toBe(false)
    const asked = [...prefixesOf(first), ...prefixesOf(seededBytes(32, 8 * BLOCK_SIZE))]
    const here = await idx.lookupMany(asked)
    await idx.close()
    // as level answers (the refresh stopped before its batch: f.bin's old entries are what level holds)
    const r = await bothWays(db, [root], asked)
    expect(here).toEqual(r.level)
    expect(r.table).toEqual(r.level) // bothWays' first open already reads no table: the generation changed
  })
})
