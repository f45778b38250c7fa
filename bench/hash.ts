/**
 * `npm run bench -- hash`: BLAKE3 throughput of chunker/blake3.ts as the
 * chunker uses it (hashBlocks on 4 KiB blocks, hashBytes on whole chunks),
 * next to `b3sum` on the same bytes. Figures: docs/ARCHITECTURE.md "Hashing".
 */
import { execFileSync } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { hashBlocks, hashBytes } from '../chunker/index.ts'
import { median } from './lib/stats.ts'

/** One line for the list of benchmarks. */
export const summary = 'BLAKE3 throughput: hashBlocks (4 KiB blocks) and hashBytes (chunks) vs b3sum'

/** Help text. */
export const usage = `Usage: npm run bench -- hash [--mib N] [--runs N]

Hashes N MiB (default 256) of random bytes in memory: per 4 KiB block with
hashBlocks (8 MiB per call, as the image scan does), and whole pieces of
64 KiB / 1 MiB / 4 MiB with hashBytes; then b3sum (one thread) on the same bytes
from a file in the page cache. Prints the median MiB/s of --runs (default 5).`

/** Its options. */
export const options = {
  mib: { type: 'string' },
  runs: { type: 'string' }
} as const

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const mib = Number(values.mib ?? 256)
  const runs = Number(values.runs ?? 5)
  if (!Number.isInteger(mib) || mib < 8 || !Number.isInteger(runs) || runs < 1) throw new Error('--mib must be an integer >= 8, --runs >= 1')
  const buf = randomFillSync(new Uint8Array(mib * 1024 * 1024))
  const out = new Uint8Array((8 << 20) / 4096 * 32)
  const rate = (f: () => void): number => {
    const times: number[] = []
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now()
      f()
      times.push((performance.now() - t0) / 1000)
    }
    return mib / median(times)
  }
  const rows: Array<[string, number]> = []
  rows.push(['hashBlocks, 4 KiB blocks, 8 MiB per call', rate(() => {
    for (let o = 0; o < buf.length; o += 8 << 20) hashBlocks(buf.subarray(o, o + (8 << 20)), out)
  })])
  for (const piece of [64 << 10, 1 << 20, 4 << 20]) {
    rows.push([`hashBytes, ${piece >= 1 << 20 ? `${piece >> 20} MiB` : `${piece >> 10} KiB`} pieces`, rate(() => {
      for (let o = 0; o < buf.length; o += piece) hashBytes(buf.subarray(o, o + piece))
    })])
  }
  const dir = mkdtempSync(join(tmpdir(), 'trimswarm-bench-hash-'))
  try {
    const file = join(dir, 'data')
    writeFileSync(file, buf)
    for (const threads of [1, 2]) {
      rows.push([`b3sum --num-threads ${threads}, whole file (page cache)`, rate(() => {
        execFileSync('b3sum', ['--num-threads', String(threads), file])
      })])
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  console.log(`BLAKE3 throughput, ${mib} MiB random bytes, median of ${runs} (${new Date().toISOString()})`)
  for (const [what, r] of rows) console.log(`  ${what.padEnd(48)} ${r.toFixed(0).padStart(6)} MiB/s`)
  return 0
}
