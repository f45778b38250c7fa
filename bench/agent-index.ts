/**
 * `npm run bench -- agent-index`: host index build time of the given folders
 * (default /usr /etc /var/lib) next to `b3sum` over the same files in the same
 * run, then the re-index with nothing changed. Figures: docs/BENCHMARKS.md `## agent`.
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runMeasured } from './lib/run-measured.ts'

/** One line for the list of benchmarks. */
export const summary = 'host index build (Trim Transfer) vs b3sum over the same files; re-index with nothing changed'

/** Help text. */
export const usage = `Usage: npm run bench -- agent-index [--index DIR]... [--work DIR]

1. \`b3sum\` over every regular file of the folders (find -type f, symlinks not
   followed, as the index does), files passed in batches by xargs;
2. \`trimswarm agent index\` into a fresh data dir (the index build);
3. the same command again with nothing changed (target: under 10 s).
Runs 1 and 2 read the same files; run 1 first, so both see a warm page cache.
Reports seconds, MB/s and the indexer's peak RSS.`

/** Its options. */
export const options = {
  index: { type: 'string', multiple: true },
  work: { type: 'string' }
} as const

const CLI = fileURLToPath(new URL('../bin/trimswarm.js', import.meta.url))


/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, allowPositionals: false })
  const folders = values.index ?? ['/usr', '/etc', '/var/lib']
  const work = values.work ?? await mkdtemp(join(tmpdir(), 'trimswarm-bench-index-'))
  const data = join(work, 'agent-data')
  await rm(data, { recursive: true, force: true })
  const log = (s: string): void => { process.stdout.write(s + '\n') }
  log(`# agent-index  ${new Date().toISOString()}  folders ${folders.join(' ')}  (${execFileSync('nproc', { encoding: 'utf8' }).trim()} CPUs)`)
  try {
    const bytes = Number(execFileSync('sh', ['-c', `find ${folders.map(f => `'${f}'`).join(' ')} -type f -printf '%s\\n' 2>/dev/null | awk '{s+=$1} END {print s}'`], { encoding: 'utf8' }).trim())
    const b3 = await runMeasured('sh', ['-c', `find ${folders.map(f => `'${f}'`).join(' ')} -type f -print0 2>/dev/null | xargs -0 b3sum >/dev/null 2>&1; true`], { inheritStderr: true })
    log(`b3sum (all threads) over the same files: ${b3.seconds.toFixed(1)} s, ${(bytes / 1e6 / b3.seconds).toFixed(0)} MB/s (${(bytes / 1e9).toFixed(2)} GB)`)
    const b31 = await runMeasured('sh', ['-c', `find ${folders.map(f => `'${f}'`).join(' ')} -type f -print0 2>/dev/null | xargs -0 b3sum --num-threads 1 >/dev/null 2>&1; true`], { inheritStderr: true })
    log(`b3sum --num-threads 1 over the same files: ${b31.seconds.toFixed(1)} s, ${(bytes / 1e6 / b31.seconds).toFixed(0)} MB/s`)
    const indexArgs = folders.flatMap(f => ['--index', f])
    const build = await runMeasured(process.execPath, [CLI, 'agent', 'index', '--data', data, ...indexArgs, '--json'], { inheritStderr: true })
    const s1 = JSON.parse(build.stdout.trim().split('\n').at(-1) ?? '{}')
    log(`index build: ${build.seconds.toFixed(1)} s wall (${Number(s1.seconds).toFixed(1)} s in refresh), ${(s1.bytesHashed / 1e6 / s1.seconds).toFixed(0)} MB/s, ${s1.files} files, ${s1.blocks} non-zero blocks, peak RSS ${build.peakRssMB.toFixed(0)} MB`)
    const again = await runMeasured(process.execPath, [CLI, 'agent', 'index', '--data', data, ...indexArgs, '--json'], { inheritStderr: true })
    const s2 = JSON.parse(again.stdout.trim().split('\n').at(-1) ?? '{}')
    log(`re-index, nothing changed: ${again.seconds.toFixed(1)} s wall (${Number(s2.seconds).toFixed(1)} s in refresh; ${s2.unchanged} unchanged, ${s2.hashed} hashed), peak RSS ${again.peakRssMB.toFixed(0)} MB (target < 10 s)`)
    const dbBytes = Number(execFileSync('du', ['-sb', join(data, 'host-index')], { encoding: 'utf8' }).split('\t')[0])
    log(`index size on disk: ${(dbBytes / 1e6).toFixed(1)} MB`)
    return build.code === 0 && again.code === 0 ? 0 : 1
  } finally {
    if (values.work == null) await rm(work, { recursive: true, force: true })
  }
}
