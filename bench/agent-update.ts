/**
 * `npm run bench -- agent-update`: the agent's CPU (user + sys) for the update
 * of base.img (v1) to next.img (v2) through the delta pack, alone (no LAN, no
 * host index): the older version's blocks copied from the output, the pack
 * downloaded and applied (issue 21, update scenario). A coordinator in this
 * process holds both versions, its segments built at a low zstd level and the
 * delta pack at the coordinator's default; each run syncs v1 into a fresh data
 * dir and output (not counted), then times `agent sync corpus@v2 --no-index
 * --no-lan` by /usr/bin/time and compares the output's BLAKE3 with next.img's.
 * Figures: docs/BENCHMARKS.md "#### Update at 100 mbit (session 9)".
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { createPublishClient } from '../client/publish-client.ts'
import { fileDigest, options, runsAndLevel, timedSync } from './agent-cpu.ts'
import { findCorpus } from './lib/corpus.ts'
import { startBranchCoordinator } from './lib/corpus-coordinator.ts'
import { cpuSeconds } from './lib/proc.ts'
import { median } from './lib/stats.ts'

const CLI = resolve(import.meta.dirname, '..', 'bin', 'trimswarm.js')

/** One line for the list of benchmarks. */
export const summary = 'agent CPU (user + sys) of the update base.img -> next.img through the delta pack, one agent, no LAN'

/** Help text. */
export const usage = `Usage: npm run bench -- agent-update [--corpus DIR] [--work DIR] [--runs N] [--level N] [--cli FILE]... [--cpu-prof DIR]

Starts a coordinator in this process (data in --work, kept when given, so a
second run skips publishing, the segment build and the delta pack build),
publishes the corpus's base.img as corpus@v1 and next.img as corpus@v2 (the
delta pack v1 -> v2 at the coordinator's default level; segments at zstd
level --level, default 3). Each run installs v1 into a fresh data dir and
output (\`agent sync corpus@v1 --no-index --no-lan\`, not counted), then times
the update (\`agent sync corpus@v2 --no-index --no-lan\`: the older version at
the output, then the delta pack) with /usr/bin/time, checks the output's
BLAKE3 and that the delta pack was used. --runs (default 3) runs of each
CLI after one not counted (compile cache); --cli runs another checkout's
bin/trimswarm.js, given more than once the CLIs take turns in every round;
--cpu-prof DIR writes a V8 CPU profile of every update into DIR.`

/** Its options: agent-cpu's. */
export { options }

/** One timed update. */
interface UpdateRun { cpu: number, wall: number, rssMiB: number, coordinatorCpu: number, originMB: number }

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const { runs, level } = runsAndLevel(values)
  const corpus = findCorpus(values.corpus)
  const clis = (values.cli ?? [CLI]).map(c => resolve(c))
  const profArgs = values['cpu-prof'] != null ? ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`] : []
  const work = values.work != null ? resolve(values.work) : await mkdtemp(join(tmpdir(), 'trimswarm-bench-agent-update-'))
  await mkdir(work, { recursive: true })
  const { coordinator, tokenFile } = await startBranchCoordinator({ work, config: { segments: { zstdLevel: level } } })
  try {
    const publisher = createPublishClient({ coordinator: coordinator.url, token: coordinator.adminToken })
    for (const [version, file] of [['v1', 'base.img'], ['v2', 'next.img']]) {
      const info = await fetch(`${coordinator.url}/v1/images/corpus/versions/${version}/info`, { headers: { authorization: `Bearer ${coordinator.adminToken}` } })
      if (!info.ok) await publisher.publish(join(corpus, file), { image: 'corpus', version })
    }
    await coordinator.images.whenIdle()
    await coordinator.segments.whenIdle()
    const want = await fileDigest(join(corpus, 'next.img'))
    process.stdout.write(`agent-update: Node ${process.version}, segments at zstd level ${level}, ${runs} runs of each of ${clis.length} CLIs, alternating\n`)
    const results: UpdateRun[][] = clis.map(() => [])
    // round 0 is not counted: it fills the compile cache (bin/trimswarm.js) of each CLI
    for (let round = 0; round <= runs; round++) {
      for (const [v, cli] of clis.entries()) {
        const dir = join(work, `run-${v}`)
        await rm(dir, { recursive: true, force: true })
        const args = (version: string): string[] => [`corpus@${version}`, '--coordinator', coordinator.url, '--token-file', tokenFile,
          '--data', join(dir, 'data'), '--out', join(dir, 'out.img'), '--no-index', '--no-lan', '--json']
        await timedSync(cli, args('v1'), [])
        const load = loadavg()[0].toFixed(1)
        const before = await cpuSeconds(process.pid)
        const r = await timedSync(cli, args('v2'), profArgs)
        const coordinatorCpu = await cpuSeconds(process.pid) - before
        if (await fileDigest(join(dir, 'out.img')) !== want) throw new Error(`${cli}: the output differs from next.img`)
        const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { usedDeltaPack?: boolean, bytes?: { origin?: number } }
        if (summary.usedDeltaPack !== true) throw new Error(`${cli}: the update did not use the delta pack`)
        const u: UpdateRun = { cpu: r.user + r.sys, wall: r.wall, rssMiB: r.rssMiB, coordinatorCpu, originMB: (summary.bytes?.origin ?? 0) / 1e6 }
        process.stdout.write(`${round === 0 ? 'warm-up (not counted)' : `run ${round}`}, ${cli} (load ${load}): update cpu ${u.cpu.toFixed(2)} s ` +
          `(user ${r.user.toFixed(2)}, sys ${r.sys.toFixed(2)}), wall ${u.wall.toFixed(2)} s, peak RSS ${u.rssMiB} MiB, ` +
          `origin ${u.originMB.toFixed(1)} MB, coordinator cpu ${coordinatorCpu.toFixed(2)} s\n`)
        await rm(dir, { recursive: true, force: true })
        if (round > 0) results[v].push(u)
      }
    }
    for (const [v, cli] of clis.entries()) {
      const rs = results[v]
      process.stdout.write(`${cli}: update cpu median ${median(rs.map(r => r.cpu)).toFixed(2)} s (${rs.map(r => r.cpu.toFixed(2)).join(', ')}), ` +
        `wall median ${median(rs.map(r => r.wall)).toFixed(2)} s\n`)
    }
    return 0
  } finally {
    await coordinator.stop()
    if (values.work == null) await rm(work, { recursive: true, force: true })
  }
}
