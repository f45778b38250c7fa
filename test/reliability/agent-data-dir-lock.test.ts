/**
 * Promise (issue 20): the agent's data dir lock is held by the kernel, so only
 * a live agent blocks another one. A stale lock file naming a live unrelated
 * process, or a killed agent still a zombie (its parent has not reaped it),
 * never blocks; a second agent on a data dir in use is refused at once with one
 * line naming the holder and exit code 75. Real agent processes throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { b3sumFile, type TempDir, type TestImage } from '../helpers/images.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { CLI, runAgent, spawnAgent, type TestCoordinator, startPublishedTestImage } from '../peer-agent/harness.ts'
import { DATA_FILES } from '../../peer-agent/constants.ts'
import { recordCounts } from './counts.ts'

/** The documented exit code of a data dir in use (bin/cli-support.ts EXIT_DATA_DIR_IN_USE, docs/CONFIGURATION.md). */
const EXIT_DATA_DIR_IN_USE = 75

let tmp: TempDir
let coord: TestCoordinator
let img: TestImage
let imgSum: string
const counts = { cases: 0, killResumes: 0, zombies: 0 }

beforeAll(async () => {
  ;({ tmp, img, imgSum, coord } = await startPublishedTestImage('trimswarm-lock-', { name: 'img', sizeMiB: 8, seed: 47 }))
})

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
  await recordCounts('agent-data-dir-lock', {
    promise: 'the agent data dir lock is held by the kernel: a stale lock, a reused PID or an unreaped zombie never blocks; a second live agent is refused at once (exit 75)',
    trials: counts.killResumes,
    cases: counts.cases,
    faultsInjected: counts.killResumes,
    zombiesAtResume: counts.zombies,
    bytesLost: 0
  })
})

function args (url: string, data: string, out: string): string[] {
  return ['sync', 'ws@v1', '--coordinator', url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--quiet', '--retries', '2', '--retry-delay', '50', '--no-index', '--no-lan']
}

/** Resolves once DATA/lock names `pid` (the agent has taken the lock: it writes its PID right after). */
async function holding (data: string, pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if ((await readFile(join(data, DATA_FILES.lockHolder), 'utf8').catch(() => '')).trim() === String(pid)) return
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  throw new Error(`agent ${pid} did not take the lock of ${data} within ${timeoutMs} ms`)
}

/**
 * Starts an agent under a parent that never reaps its children (a shell that
 * became `sleep`): once killed, the agent stays a zombie, as under an init that
 * reaps late. Resolves with the agent's PID and the parent, to be killed at the end.
 */
async function spawnUnreaped (argv: string[]): Promise<{ pid: number, parent: ChildProcess }> {
  const parent = spawn('sh', ['-c', '"$@" </dev/null >/dev/null 2>&1 & echo $!; exec sleep 600', 'sh', process.execPath, CLI, 'agent', ...argv], { stdio: ['ignore', 'pipe', 'ignore'] })
  const pid = await new Promise<number>((resolve, reject) => {
    parent.stdout!.once('data', (d: Buffer) => { resolve(Number(d.toString().trim())) })
    parent.once('error', reject)
  })
  return { pid, parent }
}

async function processState (pid: number): Promise<string | undefined> {
  return (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined))?.replace(/^.*\) /, '')[0]
}

describe('agent data dir lock (kernel-held)', () => {
  it('a stale lock file naming a live unrelated process (PID 1) does not block', async () => {
    const data = join(tmp.path, 'stale')
    await mkdir(data, { recursive: true })
    await writeFile(join(data, DATA_FILES.lockHolder), '1\n') // as after a power cut, the PID now taken by init
    const out = join(tmp.path, 'stale-out', 'ws.img')
    const r = await runAgent(args(coord.url, data, out))
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(imgSum)
    counts.cases++
  })

  it('two agents on one data dir: the second is refused at once, one line naming the first, exit 75; the first completes', async () => {
    const meter = await startByteMeter(coord.url, { rate: 256 * 1024 }) // the first runs for several seconds
    try {
      const data = join(tmp.path, 'two')
      const first = spawnAgent(args(meter.url, data, join(tmp.path, 'two-out', 'a.img')))
      await holding(data, first.child.pid!)
      const t0 = Date.now()
      const second = await runAgent(args(meter.url, data, join(tmp.path, 'two-out', 'b.img')))
      const seconds = (Date.now() - t0) / 1000
      expect(second.code, second.stderr).toBe(EXIT_DATA_DIR_IN_USE)
      expect(second.stderr.trim().split('\n')).toEqual([`trimswarm agent sync: data dir ${data} is in use by agent process ${first.child.pid}; stop it first, or give this agent a data dir of its own`])
      expect(seconds).toBeLessThan(15) // start-up only: no waiting for the lock
      expect(await stat(join(tmp.path, 'two-out', 'b.img')).catch(() => null)).toBeNull()
      const r = await first.done
      expect(r.code, r.stderr).toBe(0)
      expect(await b3sumFile(join(tmp.path, 'two-out', 'a.img'))).toBe(imgSum)
      counts.cases++
    } finally {
      await meter.close()
    }
  })

  it('kill -9, then an immediate resume while the killed agent is still an unreaped zombie, 20 times; the last run completes', async () => {
    const meter = await startByteMeter(coord.url, { rate: 2 * 1024 * 1024 })
    const parents: ChildProcess[] = []
    try {
      const data = join(tmp.path, 'kill')
      const out = join(tmp.path, 'kill-out', 'ws.img')
      let zombies = 0
      let previous: number | undefined
      for (let i = 0; i < 20; i++) {
        const agent = await spawnUnreaped(args(meter.url, data, out))
        parents.push(agent.parent)
        await holding(data, agent.pid) // each resume got the lock although its predecessor is still in the process table
        if (previous != null && await processState(previous) === 'Z') zombies++
        process.kill(agent.pid, 'SIGKILL')
        previous = agent.pid
        // no wait: the next agent starts while this one is dying or a zombie
        counts.killResumes++
      }
      counts.zombies = zombies
      // the case of the issue: every resume took the lock while its killed predecessor was an unreaped zombie
      expect(zombies).toBe(19)
      const r = await runAgent(args(meter.url, data, out))
      expect(r.code, r.stderr).toBe(0)
      expect(await b3sumFile(out)).toBe(imgSum)
    } finally {
      for (const p of parents) p.kill('SIGKILL')
      await meter.close()
    }
  }, 240_000)
})
