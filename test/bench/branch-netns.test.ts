/**
 * The branch benchmark's real network and whole CLI, as root (skipped with a
 * reason otherwise): namespaces, shaped veth, relay, counters and teardown;
 * then `npm run bench -- branch` on small test images end to end, and its
 * cleanup on SIGTERM.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createProcessManager } from '../../bench/branch/processes.ts'
import { createNetnsNetwork, netnsNames, waitReady } from '../../bench/branch/network.ts'
import { HQ_ADDRESS } from '../../bench/branch/constants.ts'
import { makeHostFolder, makeTestImage, makeUpdatedImage, tempDir } from '../helpers/images.ts'
import type { TempDir } from '../helpers/images.ts'

const REPO = resolve(import.meta.dirname, '..', '..')
const isRoot = process.getuid?.() === 0
const hasTools = ['ip', 'tc', 'curl', 'zstd', 'b3sum'].every(t => {
  try { execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }); return true } catch { return false }
})
const why = !isRoot ? 'not root: network namespaces need root' : 'ip, tc, curl, zstd or b3sum missing'

function namespaces (): string {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** Pids of processes whose command line mentions `text`. */
function processesMentioning (text: string): number[] {
  const pids: number[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(text)) pids.push(Number(d))
    } catch { /* gone */ }
  }
  return pids
}

let tmp: TempDir
beforeAll(async () => { tmp = await tempDir('trimswarm-branch-test-') })
afterAll(async () => { await tmp?.cleanup() })

describe.skipIf(!isRoot || !hasTools)(`branch network (${why})`, () => {
  it('builds hq and branch with a shaped veth and a delaying relay, counts the bytes, and removes everything', async () => {
    const pm = createProcessManager()
    const id = 900_000_000 + (process.pid % 1_000_000) // no collision with a real run's pid-based names
    const names = netnsNames(id)
    const file = join(tmp.path, 'blob')
    writeFileSync(file, Buffer.alloc(1_000_000, 5))
    const net = await createNetnsNetwork(pm, { id, wanRate: 1_250_000, wanRttMs: 100, lanRate: 12_500_000 })
    const pids: number[] = []
    try {
      expect(namespaces()).toContain(names.hq)
      expect(namespaces()).toContain(names.branch)
      expect(execFileSync('tc', ['-n', names.hq, 'qdisc', 'show', 'dev', names.hqVeth], { encoding: 'utf8' })).toMatch(/tbf .*rate 10Mbit/)
      expect(execFileSync('tc', ['-n', names.branch, 'qdisc', 'show', 'dev', names.branchVeth], { encoding: 'utf8' })).toMatch(/tbf .*rate 10Mbit/)
      // --lan shapes the branch's loopback, where client-to-client traffic goes.
      expect(execFileSync('tc', ['-n', names.branch, 'qdisc', 'show', 'dev', 'lo'], { encoding: 'utf8' })).toMatch(/tbf .*rate 100Mbit/)
      const backend = await net.backendPort(8080)
      const srv = pm.spawn('serve', ...net.hq(process.execPath, [join(REPO, 'bench/branch/serve.ts'), '--root', tmp.path, '--listen', `127.0.0.1:${backend}`]))
      await waitReady(srv.onLine, srv.exited, 'serve', srv.stderr)
      const [front] = await net.startWan([{ frontPort: 8080, backendPort: backend }])
      pids.push(...pm.live().map(c => c.pid))
      const before = net.sample()
      const t0 = performance.now()
      const out = await pm.run('curl', ...net.branch('curl', ['-sS', '--fail', '-o', '/dev/null', '-w', '%{size_download}', `http://${front}/blob`]))
      const seconds = (performance.now() - t0) / 1000
      const after = net.sample()
      expect(Number(out)).toBe(1_000_000)
      // 1 MB at 10 Mbit/s is 0.8 s (less the tbf burst) plus the 100 ms round trip.
      expect(seconds).toBeGreaterThan(0.7)
      const down = after.wanDown - before.wanDown
      const packets = after.wanDownPackets - before.wanDownPackets
      expect(down).toBeGreaterThan(1_000_000)
      expect(down).toBeLessThan(1_100_000)
      // One frame per packet at most (segmentation offload limited to the MTU).
      expect(down / packets).toBeLessThanOrEqual(1514)
      expect(after.wanUp - before.wanUp).toBeGreaterThan(0)
    } finally {
      await pm.killAll()
      await net.teardown()
    }
    expect(namespaces()).not.toContain(names.hq)
    expect(namespaces()).not.toContain(names.branch)
    expect(pids.length).toBeGreaterThan(0)
    for (const pid of pids) expect(alive(pid)).toBe(false)
  })

  it('with no round trip (--wan-rtt 0), starts no relay: clients reach the services over the shaped veth directly', async () => {
    const pm = createProcessManager()
    const id = 900_000_000 + ((process.pid + 1) % 1_000_000)
    const file = join(tmp.path, 'blob0')
    writeFileSync(file, Buffer.alloc(500_000, 7))
    const net = await createNetnsNetwork(pm, { id, wanRate: 1_250_000, wanRttMs: 0, lanRate: 0 })
    try {
      expect(net.listenHost).toBe('0.0.0.0')
      const backend = await net.backendPort(8080)
      const srv = pm.spawn('serve', ...net.hq(process.execPath, [join(REPO, 'bench/branch/serve.ts'), '--root', tmp.path, '--listen', `${net.listenHost}:${backend}`]))
      await waitReady(srv.onLine, srv.exited, 'serve', srv.stderr)
      const [front] = await net.startWan([{ frontPort: 8080, backendPort: backend }])
      expect(front).toBe(`${HQ_ADDRESS}:${backend}`)
      expect(pm.live().map(c => c.name)).not.toContain('wan relay')
      const before = net.sample()
      const out = await pm.run('curl', ...net.branch('curl', ['-sS', '--fail', '-o', '/dev/null', '-w', '%{size_download}', `http://${front}/blob0`]))
      expect(Number(out)).toBe(500_000)
      const down = net.sample().wanDown - before.wanDown
      expect(down).toBeGreaterThan(500_000)
      expect(down).toBeLessThan(560_000)
    } finally {
      await pm.killAll()
      await net.teardown()
    }
  })

  it('bad input and a non-root user: a clear message, exit 2, nothing created', () => {
    const before = namespaces()
    const runAs = (args: string[], asNobody: boolean): { status: number | null, stderr: string } => {
      const cmd = asNobody ? 'setpriv' : process.execPath
      const argv = [...(asNobody ? ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath] : []), join(REPO, 'bench/main.ts'), 'branch', ...args]
      try {
        execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
        return { status: 0, stderr: '' }
      } catch (err) {
        const e = err as { status: number | null, stderr: string }
        return { status: e.status, stderr: e.stderr }
      }
    }
    expect(runAs(['--scenario', 'lukewarm'], false)).toEqual({ status: 2, stderr: expect.stringMatching(/unknown scenario "lukewarm"/) })
    expect(runAs(['--wan', 'fast'], false)).toEqual({ status: 2, stderr: expect.stringMatching(/--wan: cannot parse rate "fast"/) })
    expect(runAs(['--images', tmp.path], false)).toEqual({ status: 2, stderr: expect.stringMatching(/no base\.img and next\.img in .*make-images\.sh/) })
    expect(runAs([], true)).toEqual({ status: 2, stderr: expect.stringMatching(/not root: .*--proxy/) })
    expect(namespaces()).toBe(before)
  })

  describe('the whole benchmark on small images', () => {
    let images: string
    let host: string
    beforeAll(async () => {
      images = join(tmp.path, 'images')
      const base = await makeTestImage(images, { name: 'base', sizeMiB: 8 })
      await makeUpdatedImage(images, base, { name: 'next' })
      host = (await makeHostFolder(tmp.path, base)).path
    }, 60_000)

    it('runs every scenario and method, verified, with the report, charts and the accounting check', async () => {
      const out = join(tmp.path, 'out')
      let pid = 0
      const r = await new Promise<{ code: number | null, stdout: string, stderr: string }>(resolve => {
        const p = spawn(process.execPath, [join(REPO, 'bench/main.ts'), 'branch', '--images', images, '--agents', '2', '--wan', '50mbit', '--wan-rtt', '10',
          '--index', host, '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] })
        pid = p.pid ?? 0
        let stdout = ''
        let stderr = ''
        p.stdout.on('data', d => { stdout += String(d) })
        p.stderr.on('data', d => { stderr += String(d) })
        p.on('close', code => resolve({ code, stdout, stderr }))
      })
      expect(r.stderr + r.stdout).not.toMatch(/TypeError|ReferenceError/)
      expect(r.code, r.stderr.slice(-2000)).toBe(0)
      const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
        mode: string
        notes: string[]
        results: Array<{ scenario: string, method: string, ran: boolean, note?: string, wan: number, clients: Array<{ verified: boolean, cpuSeconds?: number, systemSeconds?: number }>, accounting: { ok: boolean } | null }>
      }
      expect(report.mode).toBe('netns')
      const casync = existsSync('/usr/bin/casync')
      const bittorrent = existsSync('/usr/bin/aria2c') && existsSync('/usr/bin/opentracker')
      for (const scenario of ['cold', 'update', 'trim']) {
        for (const method of ['http', ...(casync ? ['casync'] : []), ...(bittorrent ? ['bittorrent'] : []), 'trimswarm']) {
          const row = report.results.find(x => x.scenario === scenario && x.method === method)
          expect(row?.ran, `${scenario}/${method}`).toBe(true)
          expect(row?.wan).toBeGreaterThan(0)
          expect(row?.clients.map(c => c.verified)).toEqual([true, true])
          if (method === 'trimswarm') expect(row?.accounting?.ok, `${scenario} accounting`).toBe(true)
          // each agent's CPU until done, and the kernel's part of it
          if (method === 'trimswarm') {
            for (const c of row?.clients ?? []) {
              expect(c.cpuSeconds).toBeGreaterThan(0)
              expect(c.systemSeconds).toBeGreaterThan(0)
              expect(c.systemSeconds).toBeLessThanOrEqual(c.cpuSeconds as number)
            }
          }
        }
      }
      // trim: HTTP repeats its cold figures, BitTorrent downloads again (same minutes as trimswarm's trim)
      const trimOf = (method: string): { note?: string } | undefined => report.results.find(x => x.scenario === 'trim' && x.method === method)
      expect(trimOf('http')?.note).toBe('figures of cold')
      if (bittorrent) expect(trimOf('bittorrent')?.note).toBeUndefined()
      // trimswarm ran as it ships (the bundle), not from the sources
      expect(report.notes.join('\n')).toMatch(/trimswarm ran as it ships/)
      const md = readFileSync(join(out, 'report.md'), 'utf8')
      expect(md).toContain('| update | trimswarm |')
      for (const f of ['bytes-by-source.svg', 'completion-times.svg', 'wan-throughput-cold.svg', 'wan-throughput-update.svg', 'wan-throughput-trim.svg']) {
        execFileSync('python3', ['-c', 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])', join(out, f)])
      }
      expect(namespaces()).not.toContain(`ts-hq-${pid}`)
      expect(namespaces()).not.toContain(`ts-br-${pid}`)
    }, 240_000)

    it('on SIGTERM stops every process, deletes the namespaces and the work folder', async () => {
      const p = spawn(process.execPath, [join(REPO, 'bench/main.ts'), 'branch', '--images', images, '--agents', '2', '--scenario', 'cold', '--out', join(tmp.path, 'out-killed')],
        { stdio: ['ignore', 'pipe', 'pipe'] })
      let stderr = ''
      const exited = new Promise<number | null>(resolve => p.on('close', code => resolve(code)))
      const work = await new Promise<string>((resolve, reject) => {
        p.stderr.on('data', d => {
          stderr += String(d)
          // Once the network is up, namespaces, veth, holders and the hq services are being started.
          const m = /work folder (\S+)\)[\s\S]*network: /.exec(stderr)
          if (m != null) resolve(m[1])
        })
        void exited.then(() => reject(new Error(`exited before the network was up: ${stderr}`)))
      })
      expect(namespaces()).toContain(`ts-hq-${p.pid}`)
      // the network line comes first, the processes a moment later: wait until some run, so SIGTERM has something to stop
      await expect.poll(() => processesMentioning(work).length, { timeout: 30_000, interval: 100 }).toBeGreaterThan(0)
      p.kill('SIGTERM')
      expect(await exited).toBe(143)
      expect(stderr).toContain('SIGTERM: stopping every process')
      expect(namespaces()).not.toContain(`ts-hq-${p.pid}`)
      expect(namespaces()).not.toContain(`ts-br-${p.pid}`)
      expect(processesMentioning(work)).toEqual([])
      expect(existsSync(work)).toBe(false)
    }, 120_000)
  })
})
