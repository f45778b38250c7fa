/** The host index on real files: build, lookup, incremental refresh, bad folders. */
import { mkdir, rm, symlink, utimes, writeFile, appendFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashBlocks } from '../../chunker/blake3.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../../protocol/constants.ts'
import { createHostIndex } from '../../peer-agent/host-index.ts'
import type { AgentLogger } from '../../peer-agent/interface.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
beforeAll(async () => { tmp = await tempDir('trimswarm-index-') })
afterAll(async () => { await tmp?.cleanup() })

function prefixOf (block: Uint8Array): Uint8Array {
  const padded = new Uint8Array(BLOCK_SIZE)
  padded.set(block)
  return hashBlocks(padded).subarray(0, BLOCK_PREFIX_BYTES)
}

function recordingLogger (): AgentLogger & { warnings: string[] } {
  const warnings: string[] = []
  return { warnings, info: () => {}, warn: (m) => { warnings.push(m) } }
}

describe('host index', () => {
  it('indexes non-zero blocks (last block zero-padded), refreshes incrementally, drops deleted files', async () => {
    const root = join(tmp.path, 'a')
    await mkdir(join(root, 'sub'), { recursive: true })
    const a = seededBytes(1, 5 * BLOCK_SIZE + 100) // 6 blocks, the last one partial
    a.fill(0, BLOCK_SIZE, 2 * BLOCK_SIZE) // block 1 is zero: never indexed
    const b = seededBytes(2, 3 * BLOCK_SIZE)
    await writeFile(join(root, 'a.bin'), a)
    await writeFile(join(root, 'sub', 'b.bin'), b)
    await symlink('/etc/hostname', join(root, 'link-out-of-tree'))
    const logger = recordingLogger()
    const db = join(tmp.path, 'db-a')
    let idx = createHostIndex({ logger }, { dbPath: db, folders: [root] })
    const s1 = await idx.refresh()
    expect(s1).toMatchObject({ files: 2, hashed: 2, unchanged: 0, removed: 0, blocks: 5 + 3 })
    expect(await idx.lookup(prefixOf(a.subarray(0, BLOCK_SIZE)))).toEqual([{ path: join(root, 'a.bin'), offset: 0, size: a.length }])
    expect(await idx.lookup(prefixOf(a.subarray(5 * BLOCK_SIZE)))).toEqual([{ path: join(root, 'a.bin'), offset: 5 * BLOCK_SIZE, size: a.length }])
    expect(await idx.lookup(prefixOf(new Uint8Array(BLOCK_SIZE)))).toEqual([])
    // many lookups through one iterator give the same answers, in the caller's order
    const asked = [b.subarray(2 * BLOCK_SIZE), new Uint8Array(BLOCK_SIZE), a.subarray(0, BLOCK_SIZE), b.subarray(0, BLOCK_SIZE), a.subarray(3 * BLOCK_SIZE, 4 * BLOCK_SIZE)].map(x => prefixOf(x.subarray(0, BLOCK_SIZE)))
    expect(await idx.lookupMany(asked)).toEqual(await Promise.all(asked.map(async p => await idx.lookup(p))))
    expect((await idx.lookupMany(asked)).map(c => c.length)).toEqual([1, 0, 1, 1, 1])
    await idx.close()

    // reopen: nothing changed -> nothing hashed
    idx = createHostIndex({ logger }, { dbPath: db, folders: [root] })
    expect(await idx.refresh()).toMatchObject({ files: 2, hashed: 0, unchanged: 2, removed: 0 })

    // change a (new content, new mtime), delete b, add c
    const a2 = seededBytes(3, 2 * BLOCK_SIZE)
    await writeFile(join(root, 'a.bin'), a2)
    await utimes(join(root, 'a.bin'), new Date(), new Date(Date.now() + 5000))
    await rm(join(root, 'sub', 'b.bin'))
    const c = seededBytes(4, BLOCK_SIZE)
    await writeFile(join(root, 'c.bin'), c)
    const s3 = await idx.refresh()
    expect(s3).toMatchObject({ files: 2, hashed: 2, unchanged: 0, removed: 1 })
    expect(await idx.lookup(prefixOf(a.subarray(0, BLOCK_SIZE)))).toEqual([]) // old content gone
    expect(await idx.lookup(prefixOf(b.subarray(0, BLOCK_SIZE)))).toEqual([]) // deleted file gone
    expect(await idx.lookup(prefixOf(a2.subarray(BLOCK_SIZE)))).toEqual([{ path: join(root, 'a.bin'), offset: BLOCK_SIZE, size: a2.length }])
    expect((await idx.lookup(prefixOf(c)))[0]?.path).toBe(join(root, 'c.bin'))
    await idx.close()
    expect(logger.warnings).toEqual([])
  })

  it('warns about a vanished or unreadable folder and indexes the others', async () => {
    const root = join(tmp.path, 'b')
    await mkdir(root, { recursive: true })
    const d = seededBytes(5, 2 * BLOCK_SIZE)
    await writeFile(join(root, 'd.bin'), d)
    const logger = recordingLogger()
    const idx = createHostIndex({ logger }, { dbPath: join(tmp.path, 'db-b'), folders: [join(tmp.path, 'does-not-exist'), root] })
    const s = await idx.refresh()
    expect(s.hashed).toBe(1)
    expect(s.warnings).toBeGreaterThan(0)
    expect(logger.warnings.join('\n')).toContain('does-not-exist')
    expect((await idx.lookup(prefixOf(d.subarray(0, BLOCK_SIZE))))[0]?.path).toBe(join(root, 'd.bin'))

    // the folder vanishes: its files are dropped, with a warning, not an error
    await rm(root, { recursive: true })
    const s2 = await idx.refresh()
    expect(s2.removed).toBe(1)
    expect(await idx.lookup(prefixOf(d.subarray(0, BLOCK_SIZE)))).toEqual([])
    await idx.close()
  })

  it('indexes a big file in several reads and picks up an append', async () => {
    const root = join(tmp.path, 'c')
    await mkdir(root, { recursive: true })
    const big = seededBytes(6, 40 * BLOCK_SIZE)
    await writeFile(join(root, 'big.bin'), big)
    const idx = createHostIndex({ logger: recordingLogger() }, { dbPath: join(tmp.path, 'db-c'), folders: [root], readBytes: 3 * BLOCK_SIZE })
    expect((await idx.refresh()).blocks).toBe(40)
    expect((await idx.lookup(prefixOf(big.subarray(37 * BLOCK_SIZE, 38 * BLOCK_SIZE))))[0]?.offset).toBe(37 * BLOCK_SIZE)
    const more = seededBytes(7, BLOCK_SIZE)
    await appendFile(join(root, 'big.bin'), more)
    await utimes(join(root, 'big.bin'), new Date(), new Date(Date.now() + 5000))
    expect(await idx.refresh()).toMatchObject({ hashed: 1, blocks: 41 })
    expect((await idx.lookup(prefixOf(more)))[0]?.offset).toBe(40 * BLOCK_SIZE)
    await idx.close()
  })
})
