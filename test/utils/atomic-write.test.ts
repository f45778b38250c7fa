import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chmod, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { atomicTempPath, syncDir, writeAtomic, writeFileAtomic } from '../../utils/atomic-write.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
beforeEach(async () => { tmp = await tempDir('trimswarm-atomic-') })
afterEach(async () => { await tmp.cleanup() })

describe('writeFileAtomic', () => {
  it('creates a file, then replaces it whole, leaving no temp file', async () => {
    const file = join(tmp.path, 'state.json')
    await writeFileAtomic(file, 'one\n')
    expect(await readFile(file, 'utf8')).toBe('one\n')
    await writeFileAtomic(file, new Uint8Array([1, 2, 3]))
    expect(new Uint8Array(await readFile(file))).toEqual(new Uint8Array([1, 2, 3]))
    expect(await readdir(tmp.path)).toEqual(['state.json'])
  })

  it('creates the file with the given mode', async () => {
    const file = join(tmp.path, 'key')
    await writeFileAtomic(file, 'secret', { mode: 0o600 })
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })

  it('leaves the old file and no temp file when the rename fails', async () => {
    // a directory at the target: rename(2) of a file over it fails with EISDIR
    const target = join(tmp.path, 'target')
    await mkdir(target)
    await expect(writeFileAtomic(target, 'x')).rejects.toThrow(/EISDIR|EEXIST|ENOTEMPTY/)
    expect(await readdir(tmp.path)).toEqual(['target'])
  })

  it('leaves the old file and no temp file when the writer fails', async () => {
    const file = join(tmp.path, 'data')
    await writeFile(file, 'old')
    await expect(writeAtomic(file, async (fh) => {
      await fh.write(new Uint8Array(100))
      throw new Error('disk went away')
    })).rejects.toThrow('disk went away')
    expect(await readFile(file, 'utf8')).toBe('old')
    expect(await readdir(tmp.path)).toEqual(['data'])
  })

  it('does not replace the file when aborted, and removes the temp file', async () => {
    const file = join(tmp.path, 'data')
    await writeFile(file, 'old')
    const ac = new AbortController()
    await expect(writeAtomic(file, async (fh) => {
      await fh.writeFile('new')
      ac.abort(new Error('stopped'))
    }, { signal: ac.signal })).rejects.toThrow('stopped')
    expect(await readFile(file, 'utf8')).toBe('old')
    expect(await readdir(tmp.path)).toEqual(['data'])
  })

  it('refuses an already aborted call before creating anything', async () => {
    const ac = new AbortController()
    ac.abort(new Error('never'))
    await expect(writeFileAtomic(join(tmp.path, 'x'), 'y', { signal: ac.signal })).rejects.toThrow('never')
    expect(await readdir(tmp.path)).toEqual([])
  })

  it('returns what the writer returns', async () => {
    const n = await writeAtomic(join(tmp.path, 'f'), async (fh) => (await fh.write(new Uint8Array(7))).bytesWritten)
    expect(n).toBe(7)
  })

  it('never writes through a symbolic link planted beside the target', async () => {
    // the temp name is unguessable and created exclusively: a link at a name we might use is never followed
    const victim = join(tmp.path, 'victim')
    await writeFile(victim, 'safe')
    const file = join(tmp.path, 'out')
    const names = new Set(Array.from({ length: 50 }, () => atomicTempPath(file)))
    expect(names.size).toBe(50)
    for (const n of names) await symlink(victim, n)
    await writeFileAtomic(file, 'data')
    expect(await readFile(victim, 'utf8')).toBe('safe')
    expect(await readFile(file, 'utf8')).toBe('data')
  })

  it('fails with the file system error when the directory is not writable, leaving nothing', async () => {
    if (process.getuid?.() === 0) return // root writes anyway
    const dir = join(tmp.path, 'ro')
    await mkdir(dir)
    await chmod(dir, 0o500)
    try {
      await expect(writeFileAtomic(join(dir, 'f'), 'x')).rejects.toThrow(/EACCES/)
      expect(await readdir(dir)).toEqual([])
    } finally {
      await chmod(dir, 0o700)
    }
  })
})

describe('atomicTempPath', () => {
  it('is a hidden .tmp file in the same directory', () => {
    const p = atomicTempPath('/data/blocks/ab/cdef')
    expect(p).toMatch(/^\/data\/blocks\/ab\/\.cdef\.[0-9a-f]{12}\.tmp$/)
  })
})

describe('syncDir', () => {
  it('syncs an existing directory and fails for a missing one', async () => {
    await syncDir(tmp.path)
    await expect(syncDir(join(tmp.path, 'missing'))).rejects.toThrow(/ENOENT/)
  })
})

describe('writeFileAtomic, exclusive', () => {
  it('creates an absent file whole, and refuses (EEXIST) to touch an existing one, leaving no temp file', async () => {
    const file = join(tmp.path, 'secret')
    await writeFileAtomic(file, 'first', { mode: 0o600, exclusive: true })
    expect(await readFile(file, 'utf8')).toBe('first')
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    await expect(writeFileAtomic(file, 'second', { exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' })
    expect(await readFile(file, 'utf8')).toBe('first')
    expect(await readdir(tmp.path)).toEqual(['secret'])
  })

  it('of two writers at once, exactly one creates the file and the other gets EEXIST', async () => {
    const file = join(tmp.path, 'raced')
    const results = await Promise.allSettled(['a', 'b'].map(async v => { await writeFileAtomic(file, v, { exclusive: true }); return v }))
    const won = results.filter(r => r.status === 'fulfilled').map(r => (r as PromiseFulfilledResult<string>).value)
    expect(won.length).toBe(1)
    expect(await readFile(file, 'utf8')).toBe(won[0])
    expect(results.find(r => r.status === 'rejected')).toMatchObject({ reason: { code: 'EEXIST' } })
    expect(await readdir(tmp.path)).toEqual(['raced'])
  })
})
