/**
 * `npm run bench -- origin-compression`: how the origin's zstd settings
 * compress what a client actually misses. Takes the non-zero 4 KiB blocks of
 * a target image whose BLAKE3 digest is in none of the seeds (first
 * occurrence only, image order: what a block batch or a delta pack holds),
 * and compresses them as one stream with the coordinator's encoder
 * (coordinator/block-batch.ts createZstdEncoder) at several levels.
 * Figures and the choice they support: docs/ARCHITECTURE.md "Origin compression".
 */
import { lstat, open, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { hashBlocks } from '../chunker/index.ts'
import { createZstdEncoder } from '../coordinator/block-batch.ts'
import { DELTA_PACK_ZSTD_LEVEL, DELTA_PACK_ZSTD_WINDOW_LOG, ORIGIN_ZSTD_LEVEL, ORIGIN_ZSTD_WINDOW_LOG } from '../coordinator/constants.ts'
import { BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { findCorpus } from './lib/corpus.ts'
import { readFull } from '../utils/read-full.ts'

/** One line for the list of benchmarks. */
export const summary = 'zstd levels/windows on the blocks a client misses (block batches and delta packs)'

/** Help text. */
export const usage = `Usage: npm run bench -- origin-compression [--target IMG] [--seed PATH]... [--levels L,L,...] [--window-log N] [--pack] [--save FILE] [--json]

Collects the non-zero 4 KiB blocks of --target (default: the corpus's next.img, bench/lib/corpus.ts)
whose BLAKE3 digest is not among the blocks of any --seed (an image file or a
folder of files, each file cut into 4 KiB blocks, the last zero-padded;
default: the corpus's base.img), first occurrence only, in image order. Then
compresses them as one zstd stream with the coordinator's encoder at each of
--levels (default "3,<ORIGIN_ZSTD_LEVEL>,9,12") with a window of
2^--window-log (default ORIGIN_ZSTD_WINDOW_LOG; 0 = zstd's default, no
long-distance matching), and with --pack also at DELTA_PACK_ZSTD_LEVEL /
DELTA_PACK_ZSTD_WINDOW_LOG. Prints bytes, wall seconds and CPU seconds per setting
(CPU seconds are the steadier figure on a shared machine).
--batch-blocks N compresses the blocks as separate streams of N blocks each
(as a client splitting its request into batches would get them) and sums them.
--save FILE writes the collected blocks to FILE (to try other compressors on
the very same bytes, e.g. \`zstd -9 --long=27 FILE\`).

Cases of ../shared/FACTS.md:
  update:        --target next.img --seed base.img            (the delta pack's blocks)
  first install: --target base.img --seed /usr --seed /etc --seed /var/lib`

/** Its options. */
export const options = {
  target: { type: 'string' },
  seed: { type: 'string', multiple: true },
  levels: { type: 'string' },
  'window-log': { type: 'string' },
  pack: { type: 'boolean' },
  save: { type: 'string' },
  'batch-blocks': { type: 'string' },
  json: { type: 'boolean' }
} as const

const READ = 8 << 20
const ZERO = Buffer.alloc(BLOCK_SIZE)
// one read buffer for every file: host folders hold ~100k small files
const buf = Buffer.allocUnsafe(READ)
const digests = new Uint8Array(READ / BLOCK_SIZE * DIGEST_BYTES)

/** Calls `onBlocks(bytes, digests)` for every 8 MiB piece of a file (the tail zero-padded to whole blocks); both are views reused by the next call. */
async function eachPiece (path: string, onBlocks: (bytes: Buffer, digests: Uint8Array) => void): Promise<void> {
  const fh = await open(path, 'r')
  try {
    for (let pos = 0; ; pos += READ) {
      const bytesRead = await readFull(fh, buf, pos)
      if (bytesRead === 0) break
      const whole = Math.ceil(bytesRead / BLOCK_SIZE) * BLOCK_SIZE
      buf.fill(0, bytesRead, whole)
      const piece = buf.subarray(0, whole)
      onBlocks(piece, hashBlocks(piece, digests))
      if (bytesRead < READ) break
    }
  } finally {
    await fh.close()
  }
}

async function * filesUnder (path: string): AsyncGenerator<string> {
  let st
  try { st = await lstat(path) } catch { return }
  if (st.isFile()) { yield path; return }
  if (!st.isDirectory()) return
  let names: string[]
  try { names = await readdir(path) } catch { return }
  for (const n of names) yield * filesUnder(join(path, n))
}

/** The missing blocks of `target` given `seeds`, concatenated. */
async function missingBlocks (target: string, seeds: string[]): Promise<{ bytes: Buffer, seedBlocks: number, targetBlocks: number, seconds: number }> {
  const t0 = performance.now()
  const known = new Set<string>()
  for (const seed of seeds) {
    for await (const file of filesUnder(seed)) {
      try {
        await eachPiece(file, (bytes, digests) => {
          const d = Buffer.from(digests.buffer, digests.byteOffset, digests.byteLength)
          for (let b = 0; b < bytes.length / BLOCK_SIZE; b++) {
            if (bytes.compare(ZERO, 0, BLOCK_SIZE, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE) !== 0) known.add(d.toString('latin1', b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES))
          }
        })
      } catch {} // unreadable host files are skipped, as the agent's index does
    }
  }
  const seedBlocks = known.size
  const parts: Buffer[] = []
  let targetBlocks = 0
  await eachPiece(target, (bytes, digests) => {
    const d = Buffer.from(digests.buffer, digests.byteOffset, digests.byteLength)
    for (let b = 0; b < bytes.length / BLOCK_SIZE; b++) {
      if (bytes.compare(ZERO, 0, BLOCK_SIZE, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE) === 0) continue
      targetBlocks++
      const key = d.toString('latin1', b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES)
      if (known.has(key)) continue
      known.add(key)
      parts.push(Buffer.from(bytes.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE)))
    }
  })
  return { bytes: Buffer.concat(parts), seedBlocks, targetBlocks, seconds: (performance.now() - t0) / 1000 }
}

/** Compresses `data` as one stream with the coordinator's encoder; returns compressed bytes and seconds. */
async function compress (data: Buffer, level: number, windowLog: number): Promise<{ bytes: number, seconds: number, cpuSeconds: number }> {
  const t0 = performance.now()
  const cpu0 = process.cpuUsage() // process-wide: includes the libuv thread zstd runs on
  const z = createZstdEncoder({ level, windowLog }, data.length)
  let bytes = 0
  const counted = (async () => { for await (const piece of z as AsyncIterable<Buffer>) bytes += piece.length })()
  for (let o = 0; o < data.length; o += 1 << 20) {
    if (!z.write(data.subarray(o, o + (1 << 20)))) await new Promise(resolve => z.once('drain', resolve))
  }
  z.end()
  await counted
  const cpu = process.cpuUsage(cpu0)
  return { bytes, seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 }
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const corpus = values.target == null || values.seed == null ? findCorpus() : ''
  const target = values.target ?? join(corpus, 'next.img')
  const seeds = values.seed ?? [join(corpus, 'base.img')]
  const levels = (values.levels ?? `3,${ORIGIN_ZSTD_LEVEL},9,12`).split(',').map(Number)
  const windowLog = Number(values['window-log'] ?? ORIGIN_ZSTD_WINDOW_LOG)
  if (levels.some(l => !Number.isInteger(l) || l < 1 || l > 22) || !Number.isInteger(windowLog)) throw new Error('--levels must be integers 1..22, --window-log an integer')
  const m = await missingBlocks(target, seeds)
  if (values.save != null) await writeFile(values.save, m.bytes)
  const mib = m.bytes.length / 1048576
  const rows: Array<{ level: number, windowLog: number, bytes: number, seconds: number, cpuSeconds: number, mibPerSecond: number }> = []
  const settings = levels.map(level => ({ level, windowLog }))
  if (values.pack === true) settings.push({ level: DELTA_PACK_ZSTD_LEVEL, windowLog: DELTA_PACK_ZSTD_WINDOW_LOG })
  const batchBytes = values['batch-blocks'] != null ? Number(values['batch-blocks']) * BLOCK_SIZE : Math.max(m.bytes.length, BLOCK_SIZE)
  if (!Number.isInteger(batchBytes) || batchBytes <= 0) throw new Error('--batch-blocks must be a whole number >= 1')
  for (const s of settings) {
    const r = { bytes: 0, seconds: 0, cpuSeconds: 0 }
    for (let o = 0; o < m.bytes.length || o === 0; o += batchBytes) {
      const part = await compress(m.bytes.subarray(o, o + batchBytes), s.level, s.windowLog)
      r.bytes += part.bytes
      r.seconds += part.seconds
      r.cpuSeconds += part.cpuSeconds
    }
    rows.push({ ...s, bytes: r.bytes, seconds: r.seconds, cpuSeconds: r.cpuSeconds, mibPerSecond: mib / r.seconds })
    if (values.json !== true) console.log(`zstd level ${String(s.level).padStart(2)}, window 2^${s.windowLog || 'default'}: ${(r.bytes / 1e6).toFixed(2)} MB in ${r.seconds.toFixed(2)} s, ${r.cpuSeconds.toFixed(2)} CPU-s (${(m.bytes.length / 1e6 / r.cpuSeconds).toFixed(1)} MB/s of input per CPU-second)`)
  }
  const result = { target, seeds, targetBlocks: m.targetBlocks, seedBlocks: m.seedBlocks, missingMiB: mib, scanSeconds: m.seconds, rows }
  if (values.json === true) console.log(JSON.stringify(result))
  else console.log(`missing: ${mib.toFixed(1)} MiB of ${(m.targetBlocks * BLOCK_SIZE / 1048576).toFixed(1)} MiB non-zero in ${target} (seeds: ${seeds.join(', ')}; scan ${m.seconds.toFixed(1)} s)`)
  return 0
}
