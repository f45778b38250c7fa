import { describe, expect, it } from 'vitest'
import { closeSync, writeSync } from 'node:fs'
import { chmod, lstat, readFile, rename, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { identityOf, installPartialFile, openPartialFile } from '../../peer-agent/partial-file.ts'
import { OutputReplacedError } from '../../peer-agent/errors.ts'
import { tempDir } from '../helpers/images.ts'

describe('partial file', () => {
  it('an earlier partial file is trusted only while it is the same, unchanged file', async () => {
    const t = await tempDir('trimswarm-partial-')
    try {
      const p = join(t.path, '.x.trimswarm-partial')
      const a = openPartialFile(p, undefined, 8192)
      expect(a.state).toBe('fresh')
      expect(((await lstat(p)).mode & 0o777)).toBe(0o600)
      const id = identityOf(a.fd)
      closeSync(a.fd)
      const same = openPartialFile(p, id, 8192)
      expect(same.state).toBe('trusted')
      writeSync(same.fd, new Uint8Array([1]), 0, 1, 0)
      closeSync(same.fd)
      // written after the identity was taken (a kill after the last checkpoint): kept, but hashed again
      await new Promise(resolve => setTimeout(resolve, 20))
      const changed = openPartialFile(p, id, 8192)
      closeSync(changed.fd)
      expect(changed.state).toBe('rehash')
      // another file in its place: started afresh, never read
      await writeFile(join(t.path, 'other'), new Uint8Array(8192).fill(7))
      await rename(join(t.path, 'other'), p)
      const replaced = openPartialFile(p, id, 8192)
      closeSync(replaced.fd)
      expect(replaced.state).toBe('fresh')
      expect(replaced.reason).toMatch(/replaced by another file/)
      expect((await readFile(p)).every(b => b === 0)).toBe(true)
    } finally {
      await t.cleanup()
    }
  })

  it('a symlink at the partial name is removed, never written through', async () => {
    const t = await tempDir('trimswarm-partial-')
    try {
      const p = join(t.path, '.x.trimswarm-partial')
      const victim = join(t.path, 'victim')
      await writeFile(victim, 'secret')
      await symlink(victim, p)
      const a = openPartialFile(p, { dev: '1', ino: '2', birth: '0', uid: process.getuid!(), ctime: '0' }, 4096)
      closeSync(a.fd)
      expect(a.state).toBe('fresh')
      expect((await lstat(p)).isFile()).toBe(true)
      expect(await readFile(victim, 'utf8')).toBe('secret')
    } finally {
      await t.cleanup()
    }
  })

  it('install refuses when the partial name no longer holds our file (swapped for a symlink before the rename)', async () => {
    const t = await tempDir('trimswarm-partial-')
    try {
      const p = join(t.path, '.out.trimswarm-partial')
      const out = join(t.path, 'out')
      await writeFile(out, 'old version')
      const a = openPartialFile(p, undefined, 4096)
      await rename(p, join(t.path, 'moved'))
      await symlink(join(t.path, 'moved'), p)
      expect(() => installPartialFile(a.fd, p, out)).toThrow(OutputReplacedError)
      closeSync(a.fd)
      expect(await readFile(out, 'utf8')).toBe('old version')
    } finally {
      await t.cleanup()
    }
  })

  it('installs the image 0644, or with the old output\'s mode less group and other write', async () => {
    const t = await tempDir('trimswarm-partial-')
    try {
      const install = async (name: string, oldMode?: number): Promise<number> => {
        const out = join(t.path, name)
        if (oldMode != null) { await writeFile(out, 'old'); await chmod(out, oldMode) }
        const p = join(t.path, `.${name}.trimswarm-partial`)
        const f = openPartialFile(p, undefined, 4096)
        installPartialFile(f.fd, p, out)
        closeSync(f.fd)
        return (await lstat(out)).mode & 0o777
      }
      expect(await install('new.img')).toBe(0o644)
      expect(await install('private.img', 0o640)).toBe(0o640)
      expect(await install('shared.img', 0o666)).toBe(0o644)
    } finally {
      await t.cleanup()
    }
  })
})
