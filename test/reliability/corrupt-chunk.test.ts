/**
 * Promise (issue 13 item 13): one byte flipped in one chunk stored on the
 * coordinator does not fail a sync with a stack trace. The block stream
 * carries every other block and marks the damaged chunk's blocks unavailable;
 * the coordinator logs the chunk with an fsck hint and counts it; the agent,
 * with no peer to take it from, ends with one line naming the chunk and what
 * the admin should do, exit code 6, and keeps every chunk it verified: once
 * the chunk is repaired, the next run fetches about that one chunk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { chunkCid } from '../../protocol/block-id.ts'
import { decodeManifest } from '../../protocol/manifest.ts'
import { decodeEnvelope } from '../../protocol/signed-manifest.ts'
import { BLOCKS_DIR } from '../../coordinator/constants.ts'
import { createDirectoryBlockStore } from '../../coordinator/directory-block-store.ts'
import { b3sumFile, flipBit, type TempDir, type TestImage } from '../helpers/images.ts'
import { runAgent, type TestCoordinator, startPublishedTestImage } from '../peer-agent/harness.ts'
import { sampleValue } from '../helpers/promtool.ts'
import { recordCounts } from './counts.ts'

let tmp: TempDir
let coord: TestCoordinator
let img: TestImage
let victim: { index: number, cid: string, length: number, path: string }
const counts: Record<string, number> = {}
/** The agent's exit code for chunks the coordinator cannot serve (bin/commands/agent.ts, docs/CONFIGURATION.md). */
const EXIT_CHUNK_UNAVAILABLE = 6

/** Flips one bit of the stored chunk file, in its middle (again: flips it back). */
async function flip (): Promise<void> {
  await flipBit(victim.path)
}

function args (data: string, out: string): string[] {
  return ['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--retries', '2', '--retry-delay', '50', '--no-index', '--no-lan']
}

beforeAll(async () => {
  // no segments: they hold their own copy of the blocks (built before the flip), so a cold agent would never read the damaged chunk
  ;({ tmp, img, coord } = await startPublishedTestImage('trimswarm-corrupt-chunk-', { name: 'img', sizeMiB: 8, seed: 51 }, { segments: { build: false } }))
  const { bytes } = await coord.coordinator.images.getEnvelope('ws', 'v1')
  const m = decodeManifest(decodeEnvelope(bytes).manifest)
  const index = m.chunks.length >> 1
  const c = m.chunks[index]
  const store = await createDirectoryBlockStore({}, { path: join(tmp.path, 'coordinator', BLOCKS_DIR) })
  victim = { index, cid: chunkCid(c.digest).toString(), length: c.length, path: store.pathOf(chunkCid(c.digest)) }
  counts.chunks = m.chunks.length
})

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
  await recordCounts('corrupt-chunk', {
    promise: 'one flipped byte in a stored chunk: every other block is served, the chunk is refused and reported, the agent ends with one line and exit 6, keeping what it verified',
    faultsInjected: 1,
    bytesLost: 0,
    ...counts
  })
})

describe('one corrupt chunk on the coordinator', () => {
  const data = (): string => join(tmp.path, 'agent-data')
  const out = (): string => join(tmp.path, 'out', 'ws.img')

  it('the agent gets every other chunk and ends with one line naming the chunk and fsck, exit 6, no stack trace', async () => {
    await flip()
    const r = await runAgent(args(data(), out()))
    expect(r.code, r.stderr).toBe(EXIT_CHUNK_UNAVAILABLE)
    const last = r.stderr.trim().split('\n').at(-1) ?? ''
    expect(last).toContain(victim.cid)
    expect(last).toMatch(/damaged on the coordinator.*trimswarm coordinator fsck/)
    expect(last).toMatch(new RegExp(`the ${counts.chunks - 1} of ${counts.chunks} chunks verified so far are kept`))
    expect(r.stderr).not.toMatch(/unexpected error|TypeError|terminated|\n\s+at /)
    // the coordinator refused the chunk and said so
    const stats = coord.coordinator.images.stats()
    expect(stats.corruptChunkReads).toBeGreaterThanOrEqual(1)
    expect(stats.blockBatchesFailed).toBe(0)
    const metrics = await (await fetch(coord.url + '/metrics', { headers: { authorization: `Bearer ${coord.coordinator.adminToken}` } })).text()
    expect(sampleValue(metrics, 'trimswarm_origin_corrupt_chunk_reads_total')).toBeGreaterThanOrEqual(1)
    counts.cases = (counts.cases ?? 0) + 1
  }, 120_000)

  it('after the repair, the next run fetches only about that chunk and the image is whole', async () => {
    await flip() // the admin's repair puts the right bytes back
    const r = await runAgent(args(data(), out()))
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(out())).toBe(await b3sumFile(img.path))
    counts.secondRunOriginBytes = r.summary.bytes.origin
    counts.victimChunkBytes = victim.length
    // the chunk (compressed or whole) plus login and manifest: nothing verified before is fetched again
    expect(r.summary.bytes.origin).toBeLessThan(victim.length + 256 * 1024)
    counts.cases = (counts.cases ?? 0) + 1
  }, 120_000)
})
