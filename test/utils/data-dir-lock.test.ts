import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DataDirLockedError } from '../../utils/errors.ts'
import { isLevelLockedError, lockDataDir, type DataDirLockInit } from '../../utils/data-dir-lock.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
beforeEach(async () => { tmp = await tempDir('trimswarm-dirlock-') })
afterEach(async () => { await tmp.cleanup() })

const init: DataDirLockInit = { lockDb: 'lock.db', holderFile: 'lock', holder: 'test process', advice: 'stop it first' }

describe('lockDataDir', () => {
  it('creates the data dir (0700), records the holder, and refuses a second holder until released', async () => {
    const dir = join(tmp.path, 'data')
    const lock = await lockDataDir(dir, init)
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect((await readFile(join(dir, 'lock'), 'utf8')).trim()).toBe(String(process.pid))
    expect(((await stat(join(dir, 'lock'))).mode & 0o777)).toBe(0o600)
    const err = await lockDataDir(dir, init).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DataDirLockedError)
    // the holder file names this process: the message does not claim a PID for it
    expect((err as Error).message).toBe(`data dir ${dir} is in use by another test process; stop it first`)
    await lock.release()
    await expect(readFile(join(dir, 'lock'))).rejects.toThrow(/ENOENT/)
    const again = await lockDataDir(dir, init)
    await again.release()
  })

  it('names a live holder from the holder file, and ignores a stale one', async () => {
    const dir = join(tmp.path, 'data')
    const lock = await lockDataDir(dir, init)
    try {
      // a live process other than us: the lock refusal names it
      const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' })
      try {
        await writeFile(join(dir, 'lock'), `${child.pid}\n`)
        await expect(lockDataDir(dir, init)).rejects.toThrow(`data dir ${dir} is in use by test process ${child.pid}; stop it first`)
      } finally {
        child.kill('SIGKILL')
        await new Promise(resolve => child.once('exit', resolve))
      }
      // a dead PID (the child just exited) is not named
      await expect(lockDataDir(dir, { ...init, advice: undefined })).rejects.toThrow(`data dir ${dir} is in use by another test process`)
    } finally {
      await lock.release()
    }
  })

  it('does not depend on the holder file: a stale file never blocks', async () => {
    const dir = join(tmp.path, 'data')
    const first = await lockDataDir(dir, init)
    await first.release()
    await writeFile(join(dir, 'lock'), '1\n') // PID 1 is alive, but holds no lock
    const lock = await lockDataDir(dir, init)
    await lock.release()
  })

  it('is held by another process until that process dies, however it dies', async () => {
    const dir = join(tmp.path, 'data')
    const script = `
      const { lockDataDir } = await import(${JSON.stringify(new URL('../../utils/data-dir-lock.ts', import.meta.url).href)})
      await lockDataDir(${JSON.stringify(dir)}, ${JSON.stringify(init)})
      console.log('locked')
      setTimeout(() => {}, 30000)`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('locked')) resolve() })
        child.once('exit', (code) => { reject(new Error(`lock holder exited with ${code}`)) })
      })
      await expect(lockDataDir(dir, init)).rejects.toThrow(`in use by test process ${child.pid}; stop it first`)
    } finally {
      child.kill('SIGKILL')
      await new Promise(resolve => child.once('exit', resolve))
    }
    const lock = await lockDataDir(dir, init)
    await lock.release()
  })
})

describe('isLevelLockedError', () => {
  it('recognises level\'s lock error and nothing else', () => {
    expect(isLevelLockedError(Object.assign(new Error('x'), { cause: { code: 'LEVEL_LOCKED' } }))).toBe(true)
    expect(isLevelLockedError(new Error('LEVEL_LOCKED'))).toBe(false)
    expect(isLevelLockedError(undefined)).toBe(false)
  })
})
