/**
 * `npm run bench -- agent-corpus`: the agent on the corpus images, against a
 * coordinator on loopback with a counting TCP proxy in front of it (bytes both
 * ways, as the issue's byte meter would see them). Figures: docs/BENCHMARKS.md `## agent`.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startByteMeter, type ByteMeter } from './lib/byte-meter.ts'
import { runMeasured, type MeasuredRun } from './lib/run-measured.ts'
import { startCorpusCoordinator } from './lib/corpus-coordinator.ts'
import { findCorpus } from './lib/corpus.ts'

/** One line for the list of benchmarks. */
export const summary = 'agent sync on the corpus through a counting proxy: first install, update, kill -9 resume, peak RSS'

/** Help text. */
export const usage = `Usage: npm run bench -- agent-corpus [--corpus DIR] [--work DIR] [--index DIR]... [--kill-limit RATE] [--skip-kill] [--skip-no-index] [--skip-index] [--keep-index]

Publishes CORPUS/base.img (v1) and CORPUS/next.img (v2) to a coordinator on
127.0.0.1, puts a counting TCP proxy in front of it, then runs real agent processes
through the proxy:
  1. first install of v1 with the host index (--index, default /usr /etc /var/lib;
     the index is built first with \`trimswarm agent index\`, timed separately);
  2. update v1 -> v2 in the same data dir;
  3. first install of v1 into a fresh output (same host index), through the proxy
     throttled to --kill-limit (default 20mbit, like a WAN link), killed with SIGKILL
     at three points (25/50/75 % of run 1's proxy bytes), then run to completion:
     total proxy bytes of the four runs vs run 1.
  2b. (unless --skip-no-index) v1 then v2 into another data dir with --no-index: the plain
     compressed download, then the update from the older version and the delta pack.
--skip-index skips runs 1 and 2 (and the host index build): only the runs without it.
--keep-index reuses the host index of an earlier run with the same --work (refreshed).
--no-segments starts the coordinator without compressed segments (every origin block
  comes in per-request batches: the figures before issue 19); use its own --work.
Each run also reports the agent's CPU seconds and the coordinator's (this process:
  the in-process coordinator and the byte meter, process.cpuUsage).
Checks every output's b3sum against the image's and reports the agents' peak RSS.
Targets (issue 4): run 1 <= 20 MB, run 2 <= 32 MB, kill/resume <= 5 % extra, RSS < 300 MB.`

/** Its options. */
export const options = {
  corpus: { type: 'string' },
  work: { type: 'string' },
  index: { type: 'string', multiple: true },
  'kill-limit': { type: 'string' },
  'skip-kill': { type: 'boolean' },
  'skip-no-index': { type: 'boolean' },
  'skip-index': { type: 'boolean' },
  'keep-index': { type: 'boolean' },
  'no-segments': { type: 'boolean' }
} as const

const CLI = fileURLToPath(new URL('../bin/trimswarm.js', import.meta.url))

interface Run extends MeasuredRun {
  summary?: any
}

/** Runs an agent process (peak RSS sampled); `killWhen` is polled to SIGKILL it. */
async function runAgent (args: string[], killWhen?: () => boolean): Promise<Run> {
  const r = await runMeasured(process.execPath, [CLI, 'agent', ...args], { killWhen })
  let summary: any
  try { summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') } catch {}
  return { ...r, summary }
}

function b3sum (path: string): string {
  return execFileSync('b3sum', ['--no-names', path], { encoding: 'utf8' }).trim()
}

const MB = 1e6

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, allowPositionals: false })
  const corpus = findCorpus(values.corpus)
  const folders = values.index ?? ['/usr', '/etc', '/var/lib']
  const work = values.work ?? await mkdtemp(join(tmpdir(), 'trimswarm-bench-agent-'))
  await mkdir(work, { recursive: true })
  const basePath = join(corpus, 'base.img')
  const nextPath = join(corpus, 'next.img')
  const log = (s: string): void => { process.stdout.write(s + '\n') }
  log(`# agent-corpus  ${new Date().toISOString()}  work ${work}`)

  const config = values['no-segments'] === true ? { segments: { build: false } } : undefined
  const { coordinator, tokenFile, admin, publishSeconds } = await startCorpusCoordinator({ work, corpus, maxPeers: 8, config })
  let proxy: ByteMeter | undefined
  let failed = false
  try {
    const info = await admin('GET', '/v1/images/corpus/versions/v2/info')
    log(`published v1 and v2, delta pack built: ${publishSeconds.toFixed(1)} s; delta pack ${(info.deltaPackBytes / MB).toFixed(1)} MB`)
    const [baseSum, nextSum] = [b3sum(basePath), b3sum(nextPath)]
    proxy = await startByteMeter(coordinator.url)
    const px = proxy

    const data = join(work, 'agent-data')
    // each run starts from a fresh agent; --keep-index keeps an index built by an earlier run
    const keepIndex = values['keep-index'] === true && await stat(join(data, 'host-index')).then(() => true, () => false)
    if (keepIndex) {
      for (const f of await readdir(data)) if (f !== 'host-index') await rm(join(data, f), { recursive: true, force: true })
    } else {
      await rm(data, { recursive: true, force: true })
    }
    await rm(join(work, 'out'), { recursive: true, force: true })
    const out = join(work, 'out', 'corpus.img')
    const indexArgs = folders.flatMap(f => ['--index', f])
    const common = (d: string, o: string): string[] => ['--coordinator', px.url, '--token-file', tokenFile, '--data', d, '--out', o, '--json', ...indexArgs]

    const withIndex = values['skip-index'] !== true
    // 0. host index (outside the sync, so the sync's numbers are the sync's)
    if (withIndex) {
      const t = performance.now()
      const idx = await runAgent(['index', '--data', data, ...indexArgs, '--json'])
      log(`host index ${keepIndex ? 'refresh (kept from an earlier run)' : 'build'} (agent index): ${((performance.now() - t) / 1000).toFixed(1)} s, peak RSS ${idx.peakRssMB.toFixed(0)} MB`)
    }

    let cpuMark = process.cpuUsage()
    const coordinatorCpu = (): number => {
      const d = process.cpuUsage(cpuMark)
      cpuMark = process.cpuUsage()
      return (d.user + d.system) / 1e6
    }
    const report = (label: string, r: Run, sum: string, want: string, target: string): void => {
      const total = px.up + px.down
      const cpu = coordinatorCpu()
      const seg = coordinator.segments.stats()
      const ok = sum === want
      if (!ok || r.code !== 0) failed = true
      log(`${label}: exit ${r.code}, ${r.seconds.toFixed(1)} s, proxy ${(total / MB).toFixed(2)} MB (down ${(px.down / MB).toFixed(2)}, up ${(px.up / MB).toFixed(2)}; ${target}), ` +
        `summary local ${((r.summary?.bytes?.local ?? 0) / MB).toFixed(1)} MB origin ${((r.summary?.bytes?.origin ?? 0) / MB).toFixed(2)} MB, delta pack ${String(r.summary?.usedDeltaPack)}, ` +
        `discarded ${r.summary?.discardedBlocks ?? '?'} blocks / ${r.summary?.discardedChunks ?? '?'} chunks, b3sum ${ok ? 'equal' : 'DIFFERENT'}, peak RSS ${r.peakRssMB.toFixed(0)} MB, ` +
        `CPU agent ${r.cpuSeconds.toFixed(2)} s coordinator ${cpu.toFixed(2)} s, segments sent so far ${(seg.bytesServed / MB).toFixed(2)} MB, load ${loadavg()[0].toFixed(1)}`)
      if (r.code !== 0) log(r.stderr.slice(-2000))
    }

    // 1. first install of v1 with the host index
    let firstBytes = 0
    if (withIndex) {
      px.reset()
      coordinatorCpu()
      const r1 = await runAgent(['sync', 'corpus@v1', ...common(data, out)])
      report('first install base.img', r1, r1.code === 0 ? b3sum(out) : '', baseSum, 'target <= 20 MB')
      firstBytes = px.up + px.down

      // 2. update v1 -> v2
      px.reset()
      coordinatorCpu()
      const r2 = await runAgent(['sync', 'corpus@v2', ...common(data, out)])
      report('update base -> next', r2, r2.code === 0 ? b3sum(out) : '', nextSum, 'target <= 32 MB')
    }

    // 2b. the same two syncs without the host index: the whole image from the origin, then the delta pack
    if (values['skip-no-index'] !== true) {
      const dataN = join(work, 'agent-data-noindex')
      const outN = join(work, 'out-noindex', 'corpus.img')
      await rm(dataN, { recursive: true, force: true })
      await rm(join(work, 'out-noindex'), { recursive: true, force: true })
      const noIndex = (d: string, o: string): string[] => [...common(d, o).filter(a => !folders.includes(a) && a !== '--index'), '--no-index']
      px.reset()
      coordinatorCpu()
      const n1 = await runAgent(['sync', 'corpus@v1', ...noIndex(dataN, outN)])
      report('first install base.img, no host index', n1, n1.code === 0 ? b3sum(outN) : '', baseSum, 'reference: whole image at zstd -19 is 48.0 MB')
      // a second cold client: what every cold client after the first costs the coordinator
      const dataC = join(work, 'agent-data-cold2')
      const outC = join(work, 'out-cold2', 'corpus.img')
      await rm(dataC, { recursive: true, force: true })
      await rm(join(work, 'out-cold2'), { recursive: true, force: true })
      px.reset()
      coordinatorCpu()
      const c2 = await runAgent(['sync', 'corpus@v1', ...noIndex(dataC, outC)])
      report('first install base.img, no host index, second cold client', c2, c2.code === 0 ? b3sum(outC) : '', baseSum, 'coordinator CPU target <= 0.5 s')
      await rm(join(work, 'out-cold2'), { recursive: true, force: true })
      px.reset()
      coordinatorCpu()
      const n2 = await runAgent(['sync', 'corpus@v2', ...noIndex(dataN, outN)])
      report('update base -> next, no host index', n2, n2.code === 0 ? b3sum(outN) : '', nextSum, 'target <= 32 MB')
    }

    // 3. kill -9 at three points, then complete, through a proxy throttled like a WAN link
    if (values['skip-kill'] !== true && withIndex) {
      await px.close()
      const { parseRate } = await import('../protocol/rate.ts')
      const slow = await startByteMeter(coordinator.url, { rate: parseRate(values['kill-limit'] ?? '20mbit') })
      proxy = slow
      const data3 = join(work, 'agent-data-kill')
      const out3 = join(work, 'out-kill', 'corpus.img')
      await rm(data3, { recursive: true, force: true })
      await rm(join(work, 'out-kill'), { recursive: true, force: true })
      // share the already built host index: copying it keeps this run's numbers about the sync
      execFileSync('cp', ['-a', data, data3])
      await rm(join(data3, 'manifests'), { recursive: true, force: true })
      await rm(join(data3, 'partial'), { recursive: true, force: true })
      await rm(join(data3, 'lock'), { force: true })
      const slowArgs = (d: string, o: string): string[] => ['--coordinator', slow.url, ...common(d, o).slice(2)]
      const kills: string[] = []
      for (const share of [0.25, 0.5, 0.75]) {
        const at = firstBytes * share
        const r = await runAgent(['sync', 'corpus@v1', ...slowArgs(data3, out3)], () => slow.up + slow.down >= at)
        kills.push(`${(share * 100).toFixed(0)} %: ${r.signal ?? `exit ${r.code}`} at ${((slow.up + slow.down) / MB).toFixed(2)} MB`)
      }
      const rk = await runAgent(['sync', 'corpus@v1', ...slowArgs(data3, out3)])
      const total = slow.up + slow.down
      const sum = rk.code === 0 ? b3sum(out3) : ''
      if (sum !== baseSum || rk.code !== 0) failed = true
      log(`kill -9 x3 then complete: ${kills.join('; ')}; final exit ${rk.code}, total proxy ${(total / MB).toFixed(2)} MB vs clean ${(firstBytes / MB).toFixed(2)} MB = ${((total / firstBytes - 1) * 100).toFixed(1)} % extra (target <= 5 %), b3sum ${sum === baseSum ? 'equal' : 'DIFFERENT'}, peak RSS ${rk.peakRssMB.toFixed(0)} MB`)
      if (rk.code !== 0) log(rk.stderr.slice(-2000))
    }
  } finally {
    await proxy?.close()
    await coordinator.stop()
    if (values.work == null) await rm(work, { recursive: true, force: true })
  }
  return failed ? 1 : 0
}
