/**
 * `npm run bench -- chunk`: `trimswarm chunk` against `casync make` on the
 * same image in the same run (both as child processes, medians), peak RSS
 * of the trimswarm process, manifest size against non-zero data, and the
 * chunk-size study behind DEFAULT_AVG_BLOCKS (docs/ARCHITECTURE.md
 * "Chunk size"). Figures and how to read them: docs/BENCHMARKS.md "chunk".
 */
import { execFile, spawn } from 'node:child_process'
import { createReadStream, existsSync } from 'node:fs'
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { buildManifest, DEFAULT_AVG_BLOCKS, type ScannedChunk } from '../chunker/index.ts'
import { parseChunkCid, toHex } from '../protocol/block-id.ts'
import { BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { median } from './lib/stats.ts'
import { findCorpus } from './lib/corpus.ts'
import { readFull } from '../utils/read-full.ts'

const exec = promisify(execFile)
const CLI = join(import.meta.dirname, '..', 'bin', 'trimswarm.js')

/** One line for the list of benchmarks. */
export const summary = 'trimswarm chunk vs casync make: speed, peak RSS, manifest size; chunk-size study'

/** Help text. */
export const usage = `Usage: npm run bench -- chunk [--image PATH] [--next PATH] [--runs N] [--skip-casync] [--skip-study] [--verify]

  --image PATH   image to chunk (default: the corpus's base.img, bench/lib/corpus.ts)
  --next PATH    newer version for the reuse study (default: the corpus's next.img)
  --runs N       timed runs of each tool (default 3; medians are reported)
  --skip-casync  only time trimswarm
  --skip-study   leave out the chunk-size study (avg 8/16/32 blocks)
  --verify       also check \`trimswarm chunk IMAGE --json\` against b3sum: every
                 chunk's CID digest equals b3sum of its exact bytes, no chunk holds
                 a zero block, and the gaps between chunks are all zero

Times \`casync make\` (fresh store in a temp dir each run) and
\`trimswarm chunk IMAGE --json\` (output discarded) as child processes under
/usr/bin/time, alternating, after one read of the image to warm the page
cache. Reports the median seconds, their ratio, trimswarm's peak RSS, and
the manifest size as a share of the image's non-zero bytes.
Targets (issue 2): >= 2x faster than casync, peak RSS < 200 MB, manifest <= 0.5 %.`

/** Its options. */
export const options = {
  image: { type: 'string' },
  next: { type: 'string' },
  runs: { type: 'string' },
  'skip-casync': { type: 'boolean' },
  'skip-study': { type: 'boolean' },
  verify: { type: 'boolean' }
} as const

interface Timed { seconds: number, maxRssKiB: number | null }

const HAVE_TIME = existsSync('/usr/bin/time')

/** Runs a command, timing it; with /usr/bin/time also its peak RSS. */
async function timed (cmd: string, args: string[], dir: string): Promise<Timed> {
  const report = join(dir, `time-${Math.random().toString(36).slice(2)}`)
  const argv = HAVE_TIME ? ['/usr/bin/time', '-f', '%e %M', '-o', report, cmd, ...args] : [cmd, ...args]
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    child.on('error', reject)
    child.on('close', code => { code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim().slice(0, 500)}`)) })
  })
  const seconds = (performance.now() - t0) / 1000
  if (!HAVE_TIME) return { seconds, maxRssKiB: null }
  const [, rss] = (await readFile(report, 'utf8')).trim().split(/\s+/).map(Number)
  return { seconds, maxRssKiB: rss }
}

async function warm (path: string): Promise<void> {
  for await (const _ of createReadStream(path, { highWaterMark: 8 << 20 })) { /* read only */ }
}

function mb (bytes: number): string { return `${(bytes / 1e6).toFixed(1)} MB` }

interface StudyRow { avg: number, chunks: number, manifestBytes: number, nonZeroBytes: number, chunkReuse: number, blockReuse: number }

/** Chunk count, manifest size and reuse of `next` from `base` for one average. */
async function study (base: string, next: string, avg: number): Promise<StudyRow> {
  const chunking = { minBlocks: Math.max(1, avg / 4), avgBlocks: avg, maxBlocks: avg * 4 }
  const baseChunks = new Set<string>()
  const baseBlocks = new Set<string>()
  const b = await buildManifest(base, {
    name: 'base', version: '1', chunking,
    onChunk: (c: ScannedChunk) => {
      baseChunks.add(toHex(c.digest))
      for (let i = 0; i < c.blockDigests.length; i += DIGEST_BYTES) baseBlocks.add(toHex(c.blockDigests.subarray(i, i + DIGEST_BYTES)))
    }
  })
  let chunkHit = 0
  let blockHit = 0
  const n = await buildManifest(next, {
    name: 'next', version: '1', chunking,
    onChunk: (c: ScannedChunk) => {
      if (baseChunks.has(toHex(c.digest))) chunkHit += c.length
      for (let i = 0; i < c.blockDigests.length; i += DIGEST_BYTES) if (baseBlocks.has(toHex(c.blockDigests.subarray(i, i + DIGEST_BYTES)))) blockHit += BLOCK_SIZE
    }
  })
  return {
    avg,
    chunks: b.stats.chunks,
    manifestBytes: b.manifestBytes.length,
    nonZeroBytes: b.stats.nonZeroBytes,
    chunkReuse: chunkHit / n.stats.nonZeroBytes,
    blockReuse: blockHit / n.stats.nonZeroBytes
  }
}

/** Checks the CLI's chunk list of `image` against b3sum and the image's bytes; throws on any mismatch. */
async function verify (image: string, dir: string): Promise<void> {
  const { stdout } = await exec(process.execPath, [CLI, 'chunk', image, '--json'], { maxBuffer: 1 << 30 })
  const list = JSON.parse(stdout) as { size: number, chunks: Array<{ offset: number, length: number, cid: string }> }
  const fh = await open(image, 'r')
  let end = 0
  let checked = 0
  try {
    const zero = new Uint8Array(BLOCK_SIZE)
    const isZero = (b: Uint8Array): boolean => Buffer.compare(b, zero) === 0
    const readAt = async (offset: number, length: number): Promise<Uint8Array> => {
      const b = new Uint8Array(length)
      if (await readFull(fh, b, offset) !== length) throw new Error(`short read at ${offset}`)
      return b
    }
    for (let i = 0; i < list.chunks.length; i += 256) {
      const batch = list.chunks.slice(i, i + 256)
      const files: string[] = []
      for (const [k, c] of batch.entries()) {
        if (c.offset < end || c.offset % BLOCK_SIZE !== 0 || c.length % BLOCK_SIZE !== 0 || c.length === 0) throw new Error(`chunk at ${c.offset} is out of order or not block aligned`)
        for (let o = end; o < c.offset; o += BLOCK_SIZE) if (!isZero(await readAt(o, BLOCK_SIZE))) throw new Error(`non-zero block at ${o} is in no chunk`)
        const bytes = await readAt(c.offset, c.length)
        for (let o = 0; o < c.length; o += BLOCK_SIZE) if (isZero(bytes.subarray(o, o + BLOCK_SIZE))) throw new Error(`chunk at ${c.offset} holds a zero block at ${c.offset + o}`)
        const f = join(dir, `verify-${k}`)
        await writeFile(f, bytes)
        files.push(f)
        end = c.offset + c.length
      }
      const sums = (await exec('b3sum', ['--no-names', ...files])).stdout.trim().split('\n')
      for (const [k, c] of batch.entries()) {
        const digest = toHex(parseChunkCid(c.cid).multihash.digest)
        if (digest !== sums[k]) throw new Error(`chunk at ${c.offset}: CID digest ${digest}, b3sum ${sums[k]}`)
        checked++
      }
    }
    for (let o = end; o < list.size; o += BLOCK_SIZE) if (!isZero(await readAt(o, BLOCK_SIZE))) throw new Error(`non-zero block at ${o} is in no chunk`)
  } finally {
    await fh.close()
  }
  console.log(`verify: ${checked} chunk CIDs equal b3sum of their bytes; chunks and all-zero gaps tile the ${list.size} bytes`)
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const corpus = values.image == null || values.next == null ? findCorpus() : ''
  const image = values.image ?? join(corpus, 'base.img')
  const next = values.next ?? join(corpus, 'next.img')
  const runs = Number(values.runs ?? 3)
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a whole number >= 1')
  if (!existsSync(image)) throw new Error(`no image at ${image}`)
  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-bench-chunk-'))
  try {
    console.log(`chunk benchmark, ${new Date().toISOString()}, image ${image}, ${runs} run(s) each`)
    if (!HAVE_TIME) console.log('(no /usr/bin/time: peak RSS not measured)')
    await warm(image)
    const casync: Timed[] = []
    const ours: Timed[] = []
    for (let r = 0; r < runs; r++) {
      if (values['skip-casync'] !== true) {
        const store = join(dir, `casync-${r}`)
        casync.push(await timed('casync', ['make', `--store=${store}.castr`, `${store}.caibx`, image], dir))
        await rm(`${store}.castr`, { recursive: true, force: true })
      }
      ours.push(await timed(process.execPath, [CLI, 'chunk', image, '--json'], dir))
    }
    const built = await buildManifest(image, { name: 'bench', version: '1' })
    const oursS = median(ours.map(t => t.seconds))
    const rss = HAVE_TIME ? Math.max(...ours.map(t => t.maxRssKiB ?? 0)) * 1024 : null
    const share = built.manifestBytes.length / built.stats.nonZeroBytes
    console.log(`trimswarm chunk --json  median ${oursS.toFixed(2)} s  (runs: ${ours.map(t => t.seconds.toFixed(2)).join(', ')})`)
    if (casync.length > 0) {
      const casS = median(casync.map(t => t.seconds))
      console.log(`casync make             median ${casS.toFixed(2)} s  (runs: ${casync.map(t => t.seconds.toFixed(2)).join(', ')})${HAVE_TIME ? `, peak RSS ${mb(Math.max(...casync.map(t => t.maxRssKiB ?? 0)) * 1024)}` : ''}`)
      console.log(`speed-up casync/trimswarm ${(casS / oursS).toFixed(1)}x   (target >= 2x: ${casS / oursS >= 2 ? 'met' : 'NOT met'})`)
    }
    if (rss != null) console.log(`trimswarm peak RSS      ${mb(rss)}   (target < 200 MB: ${rss < 200e6 ? 'met' : 'NOT met'})`)
    console.log(`manifest                ${built.manifestBytes.length} bytes for ${built.stats.nonZeroBytes} non-zero bytes = ${(100 * share).toFixed(3)} %  (target <= 0.5 %: ${share <= 0.005 ? 'met' : 'NOT met'}); ${built.stats.chunks} chunks, ${built.stats.blocks} blocks`)

    if (values['skip-study'] !== true) {
      if (!existsSync(next)) {
        console.log(`chunk-size study skipped: no ${next}`)
      } else {
        console.log(`\nchunk-size study (min avg/4, max 4 x avg; reuse = share of ${next}'s non-zero bytes found in ${image}):`)
        console.log('avg blocks | chunks (base) | manifest bytes | manifest / non-zero | reuse, whole chunks | reuse, single blocks')
        for (const avg of [8, 16, 32]) {
          const s = await study(image, next, avg)
          console.log(`${String(avg).padStart(10)}${avg === DEFAULT_AVG_BLOCKS ? '*' : ' '}| ${String(s.chunks).padStart(13)} | ${String(s.manifestBytes).padStart(14)} | ${(100 * s.manifestBytes / s.nonZeroBytes).toFixed(3).padStart(17)} % | ${(100 * s.chunkReuse).toFixed(1).padStart(17)} % | ${(100 * s.blockReuse).toFixed(1).padStart(18)} %`)
        }
        console.log('(* = DEFAULT_AVG_BLOCKS)')
      }
    }
    if (values.verify === true) await verify(image, dir)
    const { stdout } = await exec('uname', ['-srm']).catch(() => ({ stdout: '?' }))
    console.log(`machine: ${stdout.trim()}, ${cpus().length} cpu(s) ${cpus()[0]?.model ?? ''}, node ${process.version}`)
    return 0
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
