/**
 * `npm run bench -- swarm-corpus`: issue 5's "Done when" on the corpus. N agent
 * processes on 127.0.0.1 (multicast off, discovery through the coordinator
 * rendezvous), cold (no host index), start together and sync base.img through a
 * counting TCP proxy; then all update to next.img. Each phase is compared with
 * one agent alone (--no-lan) through the same proxy. Figures: docs/BENCHMARKS.md `## swarm-corpus`.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startByteMeter, type ByteMeter } from './lib/byte-meter.ts'
import { runMeasured, type MeasuredRun } from './lib/run-measured.ts'
import { startCorpusCoordinator } from './lib/corpus-coordinator.ts'
import { findCorpus } from './lib/corpus.ts'

/** One line for the list of benchmarks. */
export const summary = 'N agents syncing the corpus together (LAN swarm) vs one alone: WAN bytes through a counting proxy'

/** Help text. */
export const usage = `Usage: npm run bench -- swarm-corpus [--corpus DIR] [--work DIR] [--agents N] [--skip-alone]

Publishes CORPUS/base.img (v1) and CORPUS/next.img (v2) to a coordinator on
127.0.0.1 behind a counting TCP proxy, then:
  1. one agent alone (--no-lan, --no-index) installs v1, then updates to v2:
     the reference WAN bytes of each phase (--skip-alone: not run, no ratio);
  2. N agents (default 6; separate processes, --no-mdns, --listen 127.0.0.1,
     one --site) start together, cold, and install v1: WAN bytes through the
     proxy / the reference (target <= 1.15: exit 1 above it), bytes from peers, wall time;
  3. the same N agents all update to v2 together: same figures.
Every output's b3sum is checked against its image.`

/** Its options. */
export const options = {
  corpus: { type: 'string' },
  work: { type: 'string' },
  agents: { type: 'string' },
  'skip-alone': { type: 'boolean' }
} as const

const CLI = fileURLToPath(new URL('../bin/trimswarm.js', import.meta.url))
const MB = 1e6
/** Issue 5: the site's WAN bytes at most this times one agent's alone (the bench exits 1 above it). */
const MAX_SITE_RATIO = 1.15

interface Run extends MeasuredRun {
  summary?: any
}

async function runAgent (args: string[]): Promise<Run> {
  const r = await runMeasured(process.execPath, [CLI, 'agent', ...args])
  let summary: any
  try { summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') } catch {}
  return { ...r, summary }
}

function b3sum (path: string): string {
  return execFileSync('b3sum', ['--no-names', path], { encoding: 'utf8' }).trim()
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, allowPositionals: false })
  const corpus = findCorpus(values.corpus)
  const n = Number(values.agents ?? 6)
  if (!Number.isSafeInteger(n) || n < 2 || n > 32) throw new Error(`--agents must be 2..32, got ${values.agents}`)
  const work = values.work ?? await mkdtemp(join(tmpdir(), 'trimswarm-bench-swarm-'))
  await mkdir(work, { recursive: true })
  const log = (s: string): void => { process.stdout.write(s + '\n') }
  log(`# swarm-corpus  ${new Date().toISOString()}  ${n} agents  work ${work}`)

  const { coordinator, tokenFile, admin, publishSeconds } = await startCorpusCoordinator({ work, corpus, maxPeers: 16 })
  let proxy: ByteMeter | undefined
  let failed = false
  try {
    log(`published v1 and v2 (delta pack built): ${publishSeconds.toFixed(1)} s`)
    const sums: Record<string, string> = { v1: b3sum(join(corpus, 'base.img')), v2: b3sum(join(corpus, 'next.img')) }
    proxy = await startByteMeter(coordinator.url)
    const px = proxy
    const common = (name: string): string[] => ['--coordinator', px.url, '--token-file', tokenFile, '--data', join(work, `${name}-data`), '--out', join(work, name, 'corpus.img'), '--json', '--quiet', '--no-index']

    for (const name of ['alone', ...Array.from({ length: n }, (_, i) => `a${i + 1}`)]) {
      await rm(join(work, `${name}-data`), { recursive: true, force: true })
      await rm(join(work, name), { recursive: true, force: true })
    }
    const check = (name: string, v: string, r: Run): void => {
      if (r.code !== 0) { failed = true; log(`  ${name}: exit ${r.code}\n${r.stderr.slice(-2000)}`); return }
      const ok = b3sum(join(work, name, 'corpus.img')) === sums[v]
      if (!ok) failed = true
      log(`  ${name}: ${r.seconds.toFixed(1)} s, origin ${(r.summary.bytes.origin / MB).toFixed(1)} MB, peers ${(r.summary.bytes.peers / MB).toFixed(1)} MB, peak RSS ${r.peakRssMB.toFixed(0)} MB, b3sum ${ok ? 'ok' : 'MISMATCH'}`)
    }

    const alone: Record<string, number> = {}
    if (values['skip-alone'] !== true) {
      for (const v of ['v1', 'v2']) {
        px.reset()
        const r = await runAgent(['sync', `corpus@${v}`, ...common('alone'), '--no-lan'])
        alone[v] = px.down
        log(`one agent alone, ${v}: WAN ${(px.down / MB).toFixed(2)} MB down, ${(px.up / MB).toFixed(2)} MB up`)
        check('alone', v, r)
      }
    }
    for (const v of ['v1', 'v2']) {
      px.reset()
      const t0 = performance.now()
      const runs = await Promise.all(Array.from({ length: n }, async (_, i) => await runAgent(['sync', `corpus@${v}`, ...common(`a${i + 1}`), '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--site', 'bench'])))
      const wall = (performance.now() - t0) / 1000
      const peers = runs.reduce((s, r) => s + (r.summary?.bytes?.peers ?? 0), 0)
      const ratio = alone[v] != null ? `, ${(px.down / alone[v]).toFixed(3)}x one agent alone (target <= ${MAX_SITE_RATIO})` : ''
      if (alone[v] != null && px.down / alone[v] > MAX_SITE_RATIO) failed = true
      log(`${n} agents together, ${v}: WAN ${(px.down / MB).toFixed(2)} MB down${ratio}; from peers ${(peers / MB).toFixed(1)} MB in all; wall ${wall.toFixed(1)} s`)
      runs.forEach((r, i) => { check(`a${i + 1}`, v, r) })
    }
  } finally {
    await proxy?.close()
    await coordinator.stop()
  }
  log(failed ? 'FAILED' : 'ok')
  return failed ? 1 : 0
}
