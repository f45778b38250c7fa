/**
 * scripts/slapd.sh trusts its pid file only when the process runs that DIR's
 * slapd.conf (issue 20's review of every PID file): a stale pid file naming
 * another live process (after a reboot or a kill -9) neither gets that process
 * killed by `stop` nor blocks `start`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { tempDir, type TempDir } from './images.ts'
import { freePort } from './slapd.ts'

const run = promisify(execFile)
const SCRIPT = new URL('../../scripts/slapd.sh', import.meta.url).pathname

let tmp: TempDir
let bystander: ChildProcess
beforeAll(async () => {
  tmp = await tempDir('trimswarm-slapd-script-')
  bystander = spawn('sleep', ['600'], { stdio: 'ignore' }) // an unrelated live process whose pid a stale pid file names
})
afterAll(async () => {
  bystander?.kill('SIGKILL')
  await run(SCRIPT, ['stop', join(tmp.path, 'start')]).catch(() => {})
  await tmp?.cleanup()
})

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

describe('scripts/slapd.sh and a stale pid file', () => {
  it('stop does not kill the unrelated process the stale pid file names', async () => {
    const dir = join(tmp.path, 'stop')
    await run('mkdir', ['-p', dir])
    await writeFile(join(dir, 'slapd.pid'), `${bystander.pid}\n`)
    await run(SCRIPT, ['stop', dir], { timeout: 30_000 })
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(alive(bystander.pid!)).toBe(true)
  })

  it('start is not blocked by it', async () => {
    const dir = join(tmp.path, 'start')
    await run('mkdir', ['-p', dir])
    await writeFile(join(dir, 'slapd.pid'), `${bystander.pid}\n`)
    const { stdout } = await run(SCRIPT, ['start', dir, String(await freePort())], { timeout: 30_000 })
    expect(stdout).toMatch(/^url=ldap:\/\/127\.0\.0\.1:\d+$/m)
    expect(alive(bystander.pid!)).toBe(true)
  })
})
