/**
 * The sync context over a real partial file: what sources offer is checked,
 * written where the ledger says, and checkpointed; nothing unchecked is written.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { silentLogger } from '../../peer-agent/interface.ts'
import { openPartialImage, type PartialImage } from '../../peer-agent/partial-file.ts'
import { lackingBlocks, offerChunkBlocks } from '../../peer-agent/lan-peers-source.ts'
import { withLocalPending } from '../../peer-agent/local-pending.ts'
import { createSyncContext } from '../../peer-agent/sync-context.ts'
import { groupByPrefix } from '../../protocol/prefix-groups.ts'
import { createSyncLedger } from '../../peer-agent/sync-ledger.ts'
import type { Checkpoint } from '../../peer-agent/sync-records.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'
import { block, manifestOf } from './sync-fixtures.ts'

const A = block(1)
const B = block(2)
const C = block(3)

let tmp: TempDir
let partial: PartialImage | undefined

beforeEach(async () => { tmp = await tempDir('trimswarm-sync-context-') })
afterEach(async () => {
  partial?.close()
  await tmp.cleanup()
})

/**
 * A context over a fresh partial file for `manifest`, recording verified chunks and checkpoints;
 * `onVerified` sees each chunk as it is reported verified.
 */
function contextFor (manifest: ReturnType<typeof manifestOf>, onVerified?: (chunk: number) => void, checkpointIntervalMs = 60_000): {
  ctx: ReturnType<typeof createSyncContext>, ledger: ReturnType<typeof createSyncLedger>, verified: number[], checkpoints: number[], checkpointPath: string
} {
  partial = openPartialImage(join(tmp.path, '.img.trimswarm-partial'), undefined, manifest.size)
  const ledger = createSyncLedger(manifest)
  const verified: number[] = []
  const checkpoints: number[] = []
  const checkpointPath = join(tmp.path, 'checkpoint.json')
  const ctx = createSyncContext({
    ledger,
    partial,
    logger: silentLogger,
    originBytes: () => 0,
    onChunkVerified: (chunk) => { verified.push(chunk); onVerified?.(chunk) },
    onCheckpoint: (count) => checkpoints.push(count)
  }, { checkpointPath, manifestCid: 'cid', checkpointIntervalMs })
  return { ctx, ledger, verified, checkpoints, checkpointPath }
}

describe('sync context', () => {
  it('refuses a block that does not match its prefix, writes one that does at every position, verifies completed chunks', async () => {
    const manifest = manifestOf([[A, B], [A]])
    const { ctx, verified } = contextFor(manifest)
    expect(ctx.offerBlock(0, C, 'local')).toBe(false)
    expect(ctx.missingCount()).toBe(2)
    expect(ctx.offerBlock(0, A, 'local')).toBe(true)
    expect(verified).toEqual([1]) // chunk 1 is A alone: complete and verified
    expect(ctx.offerBlock(1, B, 'origin')).toBe(true)
    expect(verified).toEqual([1, 0])
    expect(ctx.unverifiedChunks()).toEqual([])
    const bytes = partial!.read(0, manifest.size)
    expect(bytes.subarray(0, BLOCK_SIZE).every(b => b === 0)).toBe(true) // the hole before chunk 0 stays zero
    expect(bytes.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE)).toEqual(A)
    expect(bytes.subarray(2 * BLOCK_SIZE, 3 * BLOCK_SIZE)).toEqual(B)
    expect(bytes.subarray(4 * BLOCK_SIZE, 5 * BLOCK_SIZE)).toEqual(A)
  })

  it('a whole chunk that fails its digest is refused and counted; a good one fills its blocks elsewhere too', async () => {
    const manifest = manifestOf([[A, B], [B]])
    const { ctx, verified } = contextFor(manifest)
    const wrong = new Uint8Array(2 * BLOCK_SIZE).fill(9)
    expect(ctx.offerChunk(0, wrong, 'peers')).toBe(false)
    expect(verified).toEqual([])
    const whole = new Uint8Array(2 * BLOCK_SIZE)
    whole.set(A, 0)
    whole.set(B, BLOCK_SIZE)
    expect(ctx.offerChunk(0, whole, 'peers')).toBe(true)
    // B at chunk 1 came for free from chunk 0's bytes
    expect(verified).toEqual([0, 1])
    expect(ctx.missingCount()).toBe(0)
    expect(partial!.read(4 * BLOCK_SIZE, BLOCK_SIZE)).toEqual(B)
  })

  it('a checkpoint records the verified chunks and the file it vouches for, after an fsync', async () => {
    const manifest = manifestOf([[A], [B]])
    const { ctx, checkpoints, checkpointPath } = contextFor(manifest)
    ctx.offerBlock(1, B, 'origin')
    await ctx.checkpoint()
    expect(checkpoints).toEqual([1])
    const record = JSON.parse(await readFile(checkpointPath, 'utf8')) as Checkpoint
    expect(Buffer.from(record.verified, 'base64')[0]).toBe(0b10)
    expect(record.file).toEqual(partial!.identity())
    // nothing new: no second checkpoint
    await ctx.checkpoint()
    expect(checkpoints).toEqual([1])
  })

  it('a tick past the interval checkpoints in the background: the bitmap as of its flush, one at a time; a failure is thrown by the next tick', async () => {
    const manifest = manifestOf([[A], [B], [C]])
    const { ctx, checkpoints, checkpointPath } = contextFor(manifest, undefined, 0)
    ctx.offerBlock(0, A, 'origin')
    await ctx.tick() // starts it: the fsync runs while this goes on
    ctx.offerBlock(1, B, 'origin') // verified after that flush: not in this checkpoint
    const flushed = partial!.identity()
    await ctx.tick() // one in flight already: no second one
    await ctx.settled()
    expect(checkpoints).toEqual([1])
    const record = JSON.parse(await readFile(checkpointPath, 'utf8')) as Checkpoint
    expect(Buffer.from(record.verified, 'base64')[0]).toBe(0b001)
    expect(record.file?.ino).toBe(flushed.ino)
    await ctx.tick() // chunk 1 is new since: the next one records it
    await ctx.settled()
    expect(checkpoints).toEqual([1, 2])
    expect(Buffer.from((JSON.parse(await readFile(checkpointPath, 'utf8')) as Checkpoint).verified, 'base64')[0]).toBe(0b011)
    // a checkpoint that cannot be written (its folder is gone) fails the sync at the next tick
    ctx.offerBlock(2, C, 'origin')
    await tmp.cleanup()
    await ctx.tick()
    await ctx.settled()
    await expect(ctx.tick()).rejects.toThrow(/ENOENT/)
  })

  it('a chunk is in the file (for another reader, a checkpoint) before it is reported verified; blocks of others are written by the next tick', async () => {
    const manifest = manifestOf([[A, B, C], [B]])
    const path = join(tmp.path, '.img.trimswarm-partial')
    const inFile = (offset: number, length: number): Uint8Array => Uint8Array.from(readFileSync(path).subarray(offset, offset + length))
    const seen: Uint8Array[] = []
    const { ctx } = contextFor(manifest, (chunk) => { seen.push(inFile(manifest.chunks[chunk].offset, manifest.chunks[chunk].length)) })
    expect(ctx.offerBlock(0, A, 'origin')).toBe(true)
    expect(ctx.offerBlock(1, B, 'origin')).toBe(true) // completes chunk 1 (B alone)
    expect(seen).toEqual([B])
    await ctx.tick()
    expect(inFile(BLOCK_SIZE, 2 * BLOCK_SIZE)).toEqual(Uint8Array.from([...A, ...B]))
    expect(ctx.offerBlock(2, C, 'origin')).toBe(true) // completes chunk 0, hashed from the bytes about to be written
    expect(seen[1]).toEqual(Uint8Array.from([...A, ...B, ...C]))
    expect(ctx.unverifiedChunks()).toEqual([])
  })

  it('all the blocks of a chunk at once (a segment piece): one check of its digest, placed as its blocks and elsewhere; nothing written or counted when it is wrong', async () => {
    const manifest = manifestOf([[A, B, C], [B], [A, A]])
    const { ctx, ledger, verified } = contextFor(manifest)
    expect(ctx.chunkStartingAt(0)).toBe(0)
    expect(ctx.chunkStartingAt(1)).toBe(-1) // inside chunk 0
    expect(ctx.chunkStartingAt(3)).toBe(1)
    const whole = new Uint8Array(3 * BLOCK_SIZE)
    whole.set(A, 0)
    whole.set(B, BLOCK_SIZE)
    whole.set(C, 2 * BLOCK_SIZE)
    const wrong = whole.slice()
    wrong[2 * BLOCK_SIZE + 5] ^= 1 // C changed: every block but that one would match its prefix
    expect(ctx.offerChunkBlocks(0, wrong, 'origin')).toBe(false)
    expect(ctx.offerChunkBlocks(0, whole.subarray(0, 2 * BLOCK_SIZE), 'origin')).toBe(false) // not the chunk's length
    expect(verified).toEqual([])
    expect(ctx.missingCount()).toBe(3)
    expect(ledger.tally.blocksBySource).toEqual({})
    await ctx.tick()
    expect(partial!.read(0, manifest.size).every(b => b === 0)).toBe(true)

    // two blocks of one prefix (chunk 2: A, A): placed block by block instead, where its copies are found
    expect(ctx.offerChunkBlocks(2, new Uint8Array(2 * BLOCK_SIZE), 'origin')).toBe(false)
    ctx.setSource({ name: 'origin segments' } as Parameters<typeof ctx.setSource>[0])
    expect(ctx.offerChunkBlocks(0, whole, 'origin')).toBe(true)
    // chunk 0 verified whole, and its blocks filled the others: chunk 1 (B) and chunk 2 (A, A), each checked when complete
    expect(verified.sort()).toEqual([0, 1, 2])
    expect(ctx.missingCount()).toBe(0)
    expect(ledger.tally.blocksBySource).toEqual({ 'origin segments': 6 })
    expect(ledger.tally.discardedBlocks + ledger.tally.discardedChunks).toBe(0)
    // a block already in place: the chunk is not taken whole again
    expect(ctx.offerChunkBlocks(0, whole, 'origin')).toBe(false)
    const bytes = partial!.read(0, manifest.size)
    const at = (chunk: number): number => manifest.chunks[chunk].offset
    expect(bytes.subarray(at(0), at(0) + 3 * BLOCK_SIZE)).toEqual(whole)
    expect(bytes.subarray(at(1), at(1) + BLOCK_SIZE)).toEqual(B)
    expect(bytes.subarray(at(2), at(2) + BLOCK_SIZE)).toEqual(A)
    expect(bytes.subarray(at(2) + BLOCK_SIZE, at(2) + 2 * BLOCK_SIZE)).toEqual(A)
  })
})

describe('partial chunks from peers (lan-peers-source.ts lackingBlocks, offerChunkBlocks)', () => {
  const D = block(4)
  it('asks for the blocks not in place, a block a host read beside will give included, and the blocks complete the chunk at once', async () => {
    // chunk 0: A B C D; A is in place (from a host file), C waits for a host read beside the session, B and D are nowhere
    const manifest = manifestOf([[A, B, C, D]])
    const { ctx, verified } = contextFor(manifest)
    expect(ctx.offerBlock(0, A, 'local')).toBe(true)
    const view = withLocalPending(ctx, groupByPrefix(manifest.blockPrefixes).groupOf, [2], new Promise(() => {}))
    expect(view.isMissing(2)).toBe(false) // what the session's planning sees
    const mask = lackingBlocks(view, 0)
    expect(mask).toEqual(Uint8Array.of(0b1110))
    // a peer's blocks in mask order: one off its prefix is refused
    expect(offerChunkBlocks(view, 0, mask as Uint8Array, concat([B, C, A]))).toBe('bad')
    expect(offerChunkBlocks(view, 0, mask as Uint8Array, concat([B, C, D]))).toBe('verified')
    expect(verified).toEqual([0])
    // nothing lacking: asked for whole (WANT), not as blocks
    expect(lackingBlocks(view, 0)).toBeUndefined()
  })

  it('a chunk none of whose blocks is in place is asked for whole', () => {
    const { ctx } = contextFor(manifestOf([[A, B]]))
    expect(lackingBlocks(ctx, 0)).toBeUndefined()
  })
})

function concat (blocks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(blocks.length * BLOCK_SIZE)
  blocks.forEach((b, k) => { out.set(b, k * BLOCK_SIZE) })
  return out
}
