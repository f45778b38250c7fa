import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CID } from 'multiformats/cid'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createDirectoryBlockStore } from '../../coordinator/directory-block-store.ts'
import { BLOCK_STORE_TMP_SUFFIX } from '../../coordinator/constants.ts'
import { atomicTempPath } from '../../utils/atomic-write.ts'
import type { Logger } from '../../coordinator/interface.ts'
import { toHex } from '../../protocol/block-id.ts'
import { HashMismatchError, NotFoundError } from '../../protocol/errors.ts'
import { b3sumFile, flipBit, tempDir, type TempDir } from '../helpers/images.ts'
import { blockStoreComplianceTests, testChunk } from './block-store-compliance.ts'

/** Every file under `dir`, relative, with forward slashes. */
async function allFiles (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter(e => e.isFile()).map(e => relative(dir, join(e.parentPath, e.name)).split(sep).join('/')).sort()
}

async function collect (it: AsyncIterable<CID>): Promise<string[]> {
  const out: string[] = []
  for await (const c of it) out.push(c.toString())
  return out.sort()
}

blockStoreComplianceTests('directory, verifyOnRead off', async () => {
  const dir = await tempDir('trimswarm-blocks-')
  const path = join(dir.path, 'blocks')
  const store = await createDirectoryBlockStore({}, { path, verifyOnRead: false })
  return {
    store,
    corrupt: async (cid) => { await flipBit(store.pathOf(cid)) },
    reopen: async () => await createDirectoryBlockStore({}, { path, verifyOnRead: false }),
    cleanup: dir.cleanup
  }
})

blockStoreComplianceTests('directory, default options (verifyOnRead on)', async () => {
  const dir = await tempDir('trimswarm-blocks-')
  const store = await createDirectoryBlockStore({}, { path: dir.path })
  return {
    store,
    corrupt: async (cid) => { await flipBit(store.pathOf(cid)) },
    reopen: async () => await createDirectoryBlockStore({}, { path: dir.path }),
    cleanup: dir.cleanup
  }
})

describe('directory block store', () => {
  let dir: TempDir
  beforeEach(async () => { dir = await tempDir('trimswarm-blocks-') })
  afterEach(async () => { await dir.cleanup() })

  it('stores each chunk as ab/cd/<digest hex>, a file b3sum names by itself', async () => {
    const store = await createDirectoryBlockStore({}, { path: dir.path })
    const chunks = [testChunk(1), testChunk(2, 1), testChunk(3, 16)]
    for (const c of chunks) await store.put(c.cid, c.bytes)
    const expected = chunks.map(c => {
      const hex = toHex(c.cid.multihash.digest)
      return `${hex.slice(0, 2)}/${hex.slice(2, 4)}/${hex}`
    }).sort()
    expect(await allFiles(dir.path)).toEqual(expected)
    for (const rel of expected) {
      expect(await b3sumFile(join(dir.path, rel))).toBe(rel.split('/')[2])
    }
    expect(store.pathOf(chunks[0].cid)).toBe(join(dir.path, ...expected.find(e => e.endsWith(toHex(chunks[0].cid.multihash.digest)))!.split('/')))
  })

  it('ignores a temp file left in a shard by a crash, and deletes it at the next open', async () => {
    const store = await createDirectoryBlockStore({}, { path: dir.path })
    const kept = testChunk(10)
    const lost = testChunk(11)
    await store.put(kept.cid, kept.bytes)
    // What a crash between write and rename leaves: the complete bytes under the temp name the store's atomic write uses.
    const lostFile = store.pathOf(lost.cid)
    await mkdir(join(lostFile, '..'), { recursive: true })
    const tmp = atomicTempPath(lostFile)
    await writeFile(tmp, lost.bytes)
    // ... and a half-written one in the kept chunk's shard.
    const tmp2 = atomicTempPath(store.pathOf(kept.cid))
    await writeFile(tmp2, kept.bytes.subarray(0, 100))

    expect(await collect(store.list())).toEqual([kept.cid.toString()])
    expect(await store.has(lost.cid)).toBe(false)
    await expect(store.get(lost.cid)).rejects.toBeInstanceOf(NotFoundError)
    expect(await store.get(kept.cid, { verify: true })).toEqual(kept.bytes)

    const warnings: string[] = []
    const logger: Logger = { debug () {}, info () {}, warn (msg, fields) { warnings.push(`${msg} ${JSON.stringify(fields)}`) }, error () {} }
    const reopened = await createDirectoryBlockStore({ logger }, { path: dir.path })
    await expect(stat(tmp)).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(stat(tmp2)).rejects.toMatchObject({ code: 'ENOENT' })
    expect(warnings.join('\n')).toContain('"files":2')
    expect(await collect(reopened.list())).toEqual([kept.cid.toString()])
    // The chunk whose write was lost can be stored normally.
    await reopened.put(lost.cid, lost.bytes)
    expect(await reopened.get(lost.cid, { verify: true })).toEqual(lost.bytes)
  })

  it('list skips files that are not chunks or sit in the wrong shard', async () => {
    const store = await createDirectoryBlockStore({}, { path: dir.path })
    const c = testChunk(20)
    await store.put(c.cid, c.bytes)
    const hex = toHex(c.cid.multihash.digest)
    const wrong = hex.startsWith('00') ? 'ff' : '00'
    await mkdir(join(dir.path, wrong, wrong), { recursive: true })
    await writeFile(join(dir.path, wrong, wrong, hex), c.bytes)
    await writeFile(join(dir.path, hex.slice(0, 2), hex.slice(2, 4), 'README'), 'not a chunk')
    await writeFile(join(dir.path, 'notes.txt'), 'operator notes')
    await mkdir(join(dir.path, 'lost+found'))
    expect(await collect(store.list())).toEqual([c.cid.toString()])
  })

  it('detects a bit flipped on disk: with verify per call, and by default (verifyOnRead)', async () => {
    const store = await createDirectoryBlockStore({}, { path: dir.path, verifyOnRead: false })
    const c = testChunk(30, 8)
    await store.put(c.cid, c.bytes)
    await flipBit(store.pathOf(c.cid))
    // Without verification the (damaged) bytes are returned as stored: verification is what catches it.
    const raw = await store.get(c.cid)
    expect(raw).not.toEqual(c.bytes)
    expect(raw.length).toBe(c.bytes.length)
    const err = await store.get(c.cid, { verify: true }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(HashMismatchError)
    expect((err as Error).message).toContain(c.cid.toString())
    expect((err as Error).message).not.toContain(dir.path) // messages reach API clients: no server paths

    const errors: string[] = []
    const logger: Logger = { debug () {}, info () {}, warn () {}, error (msg) { errors.push(msg) } }
    const verifying = await createDirectoryBlockStore({ logger }, { path: dir.path })
    await expect(verifying.get(c.cid)).rejects.toBeInstanceOf(HashMismatchError)
    expect(errors).toEqual(['block store: stored chunk is corrupt'])
    expect(await verifying.get(c.cid, { verify: false })).toEqual(raw)
  })

  it('detects a truncated chunk file with verify', async () => {
    const store = await createDirectoryBlockStore({}, { path: dir.path })
    const c = testChunk(31, 8)
    await store.put(c.cid, c.bytes)
    await writeFile(store.pathOf(c.cid), c.bytes.subarray(0, 4096))
    await expect(store.get(c.cid, { verify: true })).rejects.toBeInstanceOf(HashMismatchError)
  })

  it('put does not rewrite a chunk already stored, only moves its stored time forward (for storage gc\'s grace period)', async () => {
    const store = await createDirectoryBlockStore({}, { path: dir.path })
    const c = testChunk(32)
    await store.put(c.cid, c.bytes)
    const before = await stat(store.pathOf(c.cid))
    await store.put(c.cid, c.bytes)
    const after = await stat(store.pathOf(c.cid))
    expect(after.ino).toBe(before.ino)
    expect(after.mtimeMs).toBeGreaterThanOrEqual(before.mtimeMs)
  })

  it.skipIf(process.getuid?.() !== 0)('on a full disk, put fails with ENOSPC, leaves no temp file and keeps stored chunks whole', async () => {
    const run = promisify(execFile)
    const mnt = join(dir.path, 'small')
    await mkdir(mnt)
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt])
    try {
      const store = await createDirectoryBlockStore({}, { path: join(mnt, 'blocks') })
      const stored = []
      let failure: unknown
      for (let i = 0; i < 40 && failure == null; i++) {
        const c = testChunk(400 + i, 16)
        try {
          await store.put(c.cid, c.bytes)
          stored.push(c)
        } catch (err) {
          failure = err
          expect(await store.has(c.cid)).toBe(false)
        }
      }
      expect(failure).toMatchObject({ code: 'ENOSPC' })
      expect(stored.length).toBeGreaterThan(3)
      expect((await allFiles(join(mnt, 'blocks'))).filter(f => f.endsWith(BLOCK_STORE_TMP_SUFFIX))).toEqual([])
      expect(await collect(store.list())).toEqual(stored.map(c => c.cid.toString()).sort())
      for (const c of stored) expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
      // Freeing space makes the store writable again.
      await store.delete(stored[0].cid)
      await store.delete(stored[1].cid)
      const c = testChunk(499, 16)
      await store.put(c.cid, c.bytes)
      expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
    } finally {
      await run('umount', [mnt])
    }
  })

  it('refuses a path that is a file', async () => {
    const file = join(dir.path, 'file')
    await writeFile(file, 'x')
    await expect(createDirectoryBlockStore({}, { path: file })).rejects.toThrow()
  })

  it('after kill -9 during a stream of puts, every listed chunk is whole and no temp file survives the next open', async () => {
    const path = join(dir.path, 'blocks')
    const child = fileURLToPath(new URL('../helpers/block-store-writer.ts', import.meta.url))
    const proc = spawn(process.execPath, [child, path, '1000'], { stdio: ['ignore', 'pipe', 'inherit'] })
    // Wait until the writer has stored some chunks, then kill it mid-stream.
    await new Promise<void>((resolve, reject) => {
      let seen = 0
      proc.stdout.on('data', (d: Buffer) => {
        seen += d.toString().split('\n').filter(Boolean).length
        if (seen >= 20) resolve()
      })
      proc.on('exit', () => { reject(new Error('writer exited before it was killed')) })
    })
    proc.kill('SIGKILL')
    await new Promise(resolve => proc.once('exit', resolve))

    const store = await createDirectoryBlockStore({}, { path })
    const files = await allFiles(path)
    expect(files.filter(f => f.endsWith(BLOCK_STORE_TMP_SUFFIX))).toEqual([])
    const listed = []
    for await (const cid of store.list()) listed.push(cid)
    expect(listed.length).toBeGreaterThanOrEqual(20)
    expect(listed.length).toBe(files.length)
    for (const cid of listed) {
      const bytes = await store.get(cid, { verify: true })
      expect(bytes.length).toBeGreaterThan(0)
    }
    // The bytes on disk are exactly what the writer put: its chunks come from seeds 0..n.
    const first = testChunk(5000, 64)
    expect(await readFile(store.pathOf(first.cid))).toEqual(Buffer.from(first.bytes))
  })
})
