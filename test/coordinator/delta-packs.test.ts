/**
 * Delta packs in the block store (coordinator/delta-packs.ts,
 * delta-pack-builder.ts): the pure piece planning, a pack of several pieces
 * served whole and by ranges across piece boundaries, and a data dir from
 * before packs moved to the block store (its packs files under DATA/packs)
 * imported at start with the same bytes and ETag; a damaged piece refused,
 * deleted and its pack rebuilt.
 */
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chunkCidOf } from '../../chunker/blake3.ts'
import { BLOCKS_DIR, DELTA_PACK_PIECE_BYTES, PACKS_DIR } from '../../coordinator/constants.ts'
import { cutPieces } from '../../coordinator/delta-pack-builder.ts'
import { piecesInRange } from '../../coordinator/delta-packs.ts'
import { openLevelMetaDb } from '../../coordinator/meta-store/level-meta-db.ts'
import type { PackRecord } from '../../coordinator/version-store.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { toHex } from '../../protocol/block-id.ts'
import { api } from '../../protocol/index.ts'
import { makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { startImageHarness, type ImageHarness } from './image-harness.ts'

/** Length and BLAKE3 of some bytes: a mismatch of megabytes reported in one line. */
const hex = (bytes: ArrayBuffer | Uint8Array): string => {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)
  return `${b.length} bytes, ${chunkCidOf(b).toString()}`
}

describe('pieces of a pack (pure)', () => {
  it('piecesInRange names the pieces a byte range covers and the part of each', () => {
    const pieces = [{ bytes: 3 }, { bytes: 3 }, { bytes: 2 }]
    expect(piecesInRange(pieces, 0, 7)).toEqual([{ index: 0, from: 0, to: 3 }, { index: 1, from: 0, to: 3 }, { index: 2, from: 0, to: 2 }])
    expect(piecesInRange(pieces, 2, 4)).toEqual([{ index: 0, from: 2, to: 3 }, { index: 1, from: 0, to: 2 }])
    expect(piecesInRange(pieces, 3, 5)).toEqual([{ index: 1, from: 0, to: 3 }])
    expect(piecesInRange(pieces, 7, 7)).toEqual([{ index: 2, from: 1, to: 2 }])
  })

  it('cutPieces cuts any stream into pieces of the size, the last one shorter, the bytes unchanged', async () => {
    const parts = [Uint8Array.from([1, 2, 3, 4, 5]), Uint8Array.from([6]), Uint8Array.from([7, 8, 9, 10])]
    async function * source (): AsyncGenerator<Uint8Array> { yield * parts }
    const out: number[][] = []
    for await (const p of cutPieces(source(), 4)) out.push([...p])
    expect(out).toEqual([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]])
  })
})

describe('a delta pack of several pieces, and packs from before the block store', () => {
  let dir: TempDir
  let imgs: TestImage[]
  let h: ImageHarness | undefined

  beforeAll(async () => {
    dir = await tempDir()
    // unrelated images: the pack holds about all of v2's 6 MB of data, compressed to several 1 MiB pieces
    imgs = [await makeTestImage(dir.path, { name: 'a', sizeMiB: 16, dataKiB: 6000, seed: 91 }), await makeTestImage(dir.path, { name: 'b', sizeMiB: 16, dataKiB: 6000, seed: 92 })]
  })
  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  const getPack = async (hh: ImageHarness, headers: Record<string, string> = {}): Promise<Response> =>
    await hh.fetch(api.routes.delta('desk', '2', '1'), hh.tokens.desk, { headers })
  const pieceFile = (dataDir: string, bytes: Uint8Array): string => {
    const hex = toHex(chunkCidOf(bytes).multihash.digest)
    return join(dataDir, BLOCKS_DIR, hex.slice(0, 2), hex.slice(2, 4), hex)
  }

  it('serves it whole and by ranges across piece boundaries; an old pack file is imported at start, same bytes and ETag; a damaged piece is refused and the pack rebuilt', async () => {
    const dataDir = join(dir.path, 'coord')
    h = await startImageHarness(dataDir, { deltaPackZstd: { level: 3 } }, { segments: { build: false } })
    for (const [i, img] of imgs.entries()) await createPublishClient({ coordinator: h.url, token: h.tokens.admin }).publish(img.path, { image: 'desk', version: String(i + 1) })
    await h.images.whenIdle()
    const whole = await getPack(h)
    expect(whole.status).toBe(200)
    const etag = whole.headers.get('etag')!
    const pack = new Uint8Array(await whole.arrayBuffer())
    expect(pack.length).toBeGreaterThan(2 * DELTA_PACK_PIECE_BYTES)
    for (const [start, end] of [[DELTA_PACK_PIECE_BYTES - 5, DELTA_PACK_PIECE_BYTES + 5], [1, 2 * DELTA_PACK_PIECE_BYTES], [DELTA_PACK_PIECE_BYTES, pack.length - 1]]) {
      const part = await getPack(h, { range: `bytes=${start}-${end}`, 'if-range': etag })
      expect(part.status).toBe(206)
      expect(hex(await part.arrayBuffer())).toBe(hex(pack.subarray(start, end + 1)))
    }
    const pieces: Uint8Array[] = []
    for (let at = 0; at < pack.length; at += DELTA_PACK_PIECE_BYTES) pieces.push(pack.subarray(at, at + DELTA_PACK_PIECE_BYTES))
    for (const p of pieces) expect((await stat(pieceFile(dataDir, p))).size).toBe(p.length)
    await h.close()
    h = undefined

    // the data dir as the coordinator before this change left it: the pack a file, its record without pieces
    const db = await openLevelMetaDb(dataDir)
    const records = db.sublevel<string, PackRecord>('img-packs', { valueEncoding: 'json' })
    const { pieces: recorded, ...old } = (await records.get('desk/2/1'))!
    expect(recorded?.map(p => p.bytes)).toEqual(pieces.map(p => p.length))
    await records.put('desk/2/1', old)
    await db.close()
    for (const p of pieces) await rm(pieceFile(dataDir, p))
    const file = join(dataDir, PACKS_DIR, 'desk', '2', 'from-1.pack')
    await mkdir(join(dataDir, PACKS_DIR, 'desk', '2'), { recursive: true })
    await writeFile(file, pack)

    h = await startImageHarness(dataDir, { deltaPackZstd: { level: 3 } }, { segments: { build: false } })
    await h.images.whenIdle()
    const again = await getPack(h)
    expect(again.status).toBe(200)
    expect(again.headers.get('etag')).toBe(etag)
    expect(hex(await again.arrayBuffer())).toBe(hex(pack))
    for (const p of pieces) expect((await stat(pieceFile(dataDir, p))).size).toBe(p.length)
    // the file is gone once imported, and its directories with it
    await expect(stat(join(dataDir, PACKS_DIR, 'desk'))).rejects.toThrow(/ENOENT/)
    // a client resuming its download of the old file (If-Range with its ETag) gets the rest
    const rest = await getPack(h, { range: `bytes=${DELTA_PACK_PIECE_BYTES + 1}-`, 'if-range': etag })
    expect(rest.status).toBe(206)
    expect(hex(await rest.arrayBuffer())).toBe(hex(pack.subarray(DELTA_PACK_PIECE_BYTES + 1)))
    await h.close()
    h = undefined

    // a piece damaged on disk: refused (never served), deleted, and the pack rebuilt whole
    const first = pieceFile(dataDir, pieces[0])
    const damaged = new Uint8Array(await readFile(first))
    damaged[100] ^= 1
    await writeFile(first, damaged)
    h = await startImageHarness(dataDir, { deltaPackZstd: { level: 3 } }, { segments: { build: false } })
    await h.images.whenIdle()
    const refused = await getPack(h)
    expect(refused.status).toBe(422)
    expect((await refused.json()).error.name).toBe('HashMismatchError')
    await h.images.whenIdle()
    const healed = await getPack(h)
    expect(healed.status).toBe(200)
    expect(hex(await healed.arrayBuffer())).toBe(hex(pack))
  })
})
