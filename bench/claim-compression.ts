/**
 * `npm run bench -- claim-compression`: what the claim rule costs in origin
 * compression, offline. Agents that share a download each fetch their claimed
 * chunks from the origin in rounds, each round one zstd stream; this compresses
 * an image's chunks the way N agents would fetch them (owners by claim group of
 * G chunks, rounds of R bytes) with the origin's zstd settings and compares the
 * total with one stream of all chunks (one agent alone). Figures:
 * docs/BENCHMARKS.md "swarm-corpus".
 */
import { openSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { constants as zc, zstdCompressSync } from 'node:zlib'
import { buildManifest } from '../chunker/index.ts'
import { claimScore } from '../protocol/block-exchange.ts'
import { ORIGIN_ZSTD_LEVEL, ORIGIN_ZSTD_WINDOW_LOG } from '../coordinator/constants.ts'
import { findCorpus } from './lib/corpus.ts'
import { readFullSync } from '../utils/read-full.ts'

/** One line for the list of benchmarks. */
export const summary = 'origin bytes of N agents splitting a download by claim group and round, vs one stream (offline)'

/** Help text. */
export const usage = `Usage: npm run bench -- claim-compression [--image PATH] [--agents N] [--groups G,...] [--rounds-mib R,...]

Chunks the image (default the corpus's base.img) as the publisher does, then
for each claim-group size G (chunks per owner, default 1,16,64,256) and round
size R MiB (default 2,8,32): assigns each group to one of N (default 6) peer
ids by the claim score, cuts each agent's chunks into rounds of R MiB, and
compresses every round as one zstd stream at the origin's level and window.
Prints the total against one stream of all chunks.`

/** Its options. */
export const options = {
  image: { type: 'string' },
  agents: { type: 'string' },
  groups: { type: 'string' },
  'rounds-mib': { type: 'string' }
} as const

function numbers (text: string, what: string): number[] {
  const out = text.split(',').map(Number)
  if (out.some(n => !Number.isInteger(n) || n < 1)) throw new Error(`${what} must be positive integers, comma-separated`)
  return out
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const image = values.image ?? join(findCorpus(), 'base.img')
  const agents = numbers(values.agents ?? '6', '--agents')[0]
  const groups = numbers(values.groups ?? '1,16,64,256', '--groups')
  const rounds = numbers(values['rounds-mib'] ?? '2,8,32', '--rounds-mib').map(r => r * 1024 * 1024)
  const { manifest } = await buildManifest(image, { name: 'bench', version: 'v1' })
  const fd = openSync(image, 'r')
  const chunks = manifest.chunks.map(c => {
    const b = Buffer.alloc(c.length)
    if (readFullSync(fd, b, c.offset) < c.length) throw new Error(`${image} changed while being read`)
    return b
  })
  closeSync(fd)
  const zstd = (bufs: Buffer[]): number => zstdCompressSync(Buffer.concat(bufs), { params: { [zc.ZSTD_c_compressionLevel]: ORIGIN_ZSTD_LEVEL, [zc.ZSTD_c_windowLog]: ORIGIN_ZSTD_WINDOW_LOG } }).length
  const one = zstd(chunks)
  const total = chunks.reduce((s, b) => s + b.length, 0)
  console.log(`# claim-compression  ${new Date().toISOString()}  ${image}: ${chunks.length} chunks, ${(total / 1e6).toFixed(1)} MB; ${agents} agents; zstd ${ORIGIN_ZSTD_LEVEL}, window 2^${ORIGIN_ZSTD_WINDOW_LOG}`)
  console.log(`one stream of all chunks: ${(one / 1e6).toFixed(2)} MB`)
  console.log('| chunks per claim group | round | origin bytes of all agents | vs one stream |')
  console.log('| --- | --- | --- | --- |')
  const peers = Array.from({ length: agents }, (_, k) => `12D3KooWbenchpeer${k}`)
  const owner = (group: number): number => {
    let best = 0
    for (let k = 1; k < peers.length; k++) if (claimScore(group, peers[k]) > claimScore(group, peers[best])) best = k
    return best
  }
  for (const round of rounds) {
    for (const g of groups) {
      let sum = 0
      for (let k = 0; k < agents; k++) {
        let cur: Buffer[] = []
        let bytes = 0
        chunks.forEach((b, i) => {
          if (owner(Math.floor(i / g)) !== k) return
          cur.push(b)
          bytes += b.length
          if (bytes >= round) { sum += zstd(cur); cur = []; bytes = 0 }
        })
        if (cur.length > 0) sum += zstd(cur)
      }
      console.log(`| ${g} | ${round / 1024 / 1024} MiB | ${(sum / 1e6).toFixed(2)} MB | ${(sum / one).toFixed(3)}x |`)
    }
  }
  return 0
}
