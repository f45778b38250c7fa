/** `trimswarm chunk IMAGE`: split an image into content-addressed chunks and list them. */
import type { ParseArgsOptionsConfig } from 'node:util'
import { buildManifest, checkImage, chunkCidText, InvalidChunkingError, InvalidImageError,
  resolveChunking, scanImage, type ChunkingInit } from '../../chunker/index.ts'
import { DEFAULT_AVG_BLOCKS, DEFAULT_MAX_BLOCKS, DEFAULT_MIN_BLOCKS } from '../../chunker/constants.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { CliError, onePositional, UsageError, type Command, type CommandArgs } from '../cli-support.ts'

const usage = `Usage: trimswarm chunk IMAGE [--json] [--min-blocks N] [--avg-blocks N] [--max-blocks N]

Splits a raw disk image into content-defined chunks of whole 4 KiB blocks
(all-zero blocks are holes and belong to no chunk) and lists them. One
streaming pass; memory stays bounded whatever the image size.

Options
  --json            print {"size": N, "blockSize": 4096, "chunks": [{"offset": N,
                    "length": N, "cid": "..."}, ...]}: every non-zero chunk in
                    image order (zero regions are the gaps). A chunk's CID digest
                    is BLAKE3 of its bytes: b3sum of the same bytes prints it.
  --min-blocks N    fewest blocks a content-defined cut leaves in a chunk
  --avg-blocks N    a cut is taken with probability 1/N per block past the
                    minimum (a power of two)
  --max-blocks N    a chunk is cut after N blocks
                    (defaults: ${DEFAULT_MIN_BLOCKS} / ${DEFAULT_AVG_BLOCKS} / ${DEFAULT_MAX_BLOCKS} blocks, i.e.
                    ${DEFAULT_MIN_BLOCKS * BLOCK_SIZE / 1024} / ${DEFAULT_AVG_BLOCKS * BLOCK_SIZE / 1024} / ${DEFAULT_MAX_BLOCKS * BLOCK_SIZE / 1024} KiB;
                    see docs/ARCHITECTURE.md "Chunk size")
  -h, --help        this text

Without --json, prints a short summary (size, non-zero data, chunks, and the
size of this image's manifest).

Exit codes: 0 ok, 1 not an image (a directory, empty, size not a multiple of
4096), 2 bad usage, 7 image missing or unreadable; all codes: trimswarm --help.`

/** The --min/avg/max-blocks options (shared with `manifest build`), read by chunkingFromArgs. */
export const CHUNKING_OPTIONS: ParseArgsOptionsConfig = {
  'min-blocks': { type: 'string' },
  'avg-blocks': { type: 'string' },
  'max-blocks': { type: 'string' }
}

/** Parses the --min/avg/max-blocks options (shared with `manifest build`). */
export function chunkingFromArgs (args: CommandArgs, text: string): ChunkingInit {
  const init: ChunkingInit = {}
  for (const [opt, key] of [['min-blocks', 'minBlocks'], ['avg-blocks', 'avgBlocks'], ['max-blocks', 'maxBlocks']] as const) {
    const v = args.values[opt]
    if (v === undefined) continue
    if (typeof v !== 'string' || !/^[0-9]+$/.test(v)) throw new UsageError(`--${opt} must be a whole number, got ${JSON.stringify(v)}\n\n${text}`)
    init[key] = Number(v)
  }
  try {
    resolveChunking(init)
  } catch (err) {
    if (err instanceof InvalidChunkingError) throw new UsageError(`${err.message}\n\n${text}`)
    throw err
  }
  return init
}

/** Turns chunker errors into CLI errors (message, exit code 1, no stack trace). */
export function asCliError (err: unknown): unknown {
  if (err instanceof InvalidImageError) return new CliError(err.message, { cause: err })
  return err
}

/**
 * Writes to stdout and resolves once the bytes are handed to the OS, so
 * output never piles up in memory. A reader that went away (EPIPE, e.g.
 * `| head`) rejects with that error (see untilReaderLeaves).
 */
export async function writeStdout (data: string | Uint8Array): Promise<void> {
  // A closed pipe is reported both to the write callback and as an 'error'
  // event (after it): the lasting listener keeps the event from crashing the process.
  if (!stdoutWatched) {
    process.stdout.on('error', (err) => { stdoutError = err })
    stdoutWatched = true
  }
  if (stdoutError != null) throw stdoutError
  await new Promise<void>((resolve, reject) => {
    process.stdout.write(data, (err) => {
      if (err != null) reject(err)
      else resolve()
    })
  })
}

let stdoutWatched = false
let stdoutError: Error | undefined

/**
 * Buffered text output for long listings: text is copied into one reused
 * 64 KiB buffer, written when full. Building one big string instead keeps
 * long-lived string pieces in V8's young generation and grows the heap.
 */
export function createOutputBuffer (size = 64 * 1024): { append: (text: string) => Promise<void>, flush: () => Promise<void> } {
  const buf = Buffer.allocUnsafe(size)
  let used = 0
  const flush = async (): Promise<void> => {
    if (used === 0) return
    const n = used
    used = 0
    await writeStdout(buf.subarray(0, n)) // resolves after the write: buf may then be reused
  }
  return {
    async append (text) {
      if (used + Buffer.byteLength(text) > size) await flush()
      if (Buffer.byteLength(text) > size) {
        await writeStdout(text)
        return
      }
      used += buf.write(text, used)
    },
    flush
  }
}

/** Awaits output; a reader that closed the pipe early (EPIPE) is not an error. */
export async function untilReaderLeaves (writing: Promise<void>): Promise<void> {
  try {
    await writing
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code !== 'EPIPE') throw err
  }
}

async function printJson (image: string, chunking: ChunkingInit): Promise<void> {
  const { size } = await checkImage(image)
  const out = createOutputBuffer()
  await out.append(`{"size": ${size}, "blockSize": ${BLOCK_SIZE}, "chunks": [`)
  let first = true
  for await (const c of scanImage(image, chunking)) {
    await out.append(`${first ? '' : ','}\n{"offset": ${c.offset}, "length": ${c.length}, "cid": "${chunkCidText(c.digest)}"}`)
    first = false
  }
  await out.append(first ? ']}\n' : '\n]}\n')
  await out.flush()
}

function mib (n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

const command: Command = {
  summary: 'split an image into content-addressed chunks',
  usage,
  options: { json: { type: 'boolean' }, ...CHUNKING_OPTIONS },
  async run (args) {
    const image = onePositional(args, 'IMAGE', usage)
    const chunking = chunkingFromArgs(args, usage)
    try {
      if (args.values.json === true) {
        await untilReaderLeaves(printJson(image, chunking))
        return 0
      }
      // The summary reports the manifest's size; the name and version are placeholders (no CID shown: it depends on them).
      const { manifest, manifestBytes, stats } = await buildManifest(image, { name: 'image', version: '0', chunking })
      const p = manifest.chunking
      console.log([
        `image      ${image}`,
        `size       ${stats.size} bytes (${mib(stats.size)}), ${stats.size / BLOCK_SIZE} blocks of ${BLOCK_SIZE}`,
        `non-zero   ${stats.nonZeroBytes} bytes (${mib(stats.nonZeroBytes)}, ${(100 * stats.nonZeroBytes / stats.size).toFixed(1)} %)` +
          ` in ${stats.blocks} blocks`,
        `chunks     ${stats.chunks}, mean ${stats.chunks > 0 ? (stats.nonZeroBytes / stats.chunks / 1024).toFixed(1) : '0'} KiB` +
          ` (min/avg/max ${p.minBlocks}/${p.avgBlocks}/${p.maxBlocks} blocks)`,
        `manifest   ${manifestBytes.length} bytes (${stats.nonZeroBytes > 0 ? (100 * manifestBytes.length / stats.nonZeroBytes).toFixed(3) : '0'}` +
          ` % of non-zero data)`,
        `time       ${stats.seconds.toFixed(2)} s (${mib(stats.size / Math.max(stats.seconds, 1e-9))}/s)`
      ].join('\n'))
      return 0
    } catch (err) {
      throw asCliError(err)
    }
  }
}

export default command
