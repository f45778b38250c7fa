import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashBytes } from '../../chunker/blake3.ts'
import { buildManifest } from '../../chunker/build-manifest.ts'
import { InvalidChunkingError, InvalidImageError } from '../../chunker/errors.ts'
import { toHex } from '../../protocol/block-id.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DAG_CBOR_CODE } from '../../protocol/constants.ts'
import { ValidationError } from '../../protocol/errors.ts'
import { blockPrefix, decodeManifest } from '../../protocol/manifest.ts'
import { b3sumFile, tempDir, type TempDir } from '../helpers/images.ts'
import { buildImage } from './synthetic-image.ts'

let tmp: TempDir
let image: Uint8Array
let path: string
beforeAll(async () => {
  tmp = await tempDir('trimswarm-manifest-')
  image = buildImage({ seed: 5, segments: [{ zero: 2 }, { random: 40 }, { zero: 5 }, { random: 3 }, { copy: 20, from: 10 }, { zero: 1 }] })
  path = join(tmp.path, 'img')
  writeFileSync(path, image)
})
afterAll(async () => { await tmp.cleanup() })

describe('buildManifest', () => {
  it('builds a canonical manifest whose chunks, prefixes and CID match the bytes', async () => {
    const seen: Array<{ offset: number, length: number }> = []
    const built = await buildManifest(path, {
      name: 'test-image',
      version: '1.0',
      chunking: { minBlocks: 2, avgBlocks: 4, maxBlocks: 16 },
      onChunk: c => { seen.push({ offset: c.offset, length: c.length }) }
    })
    const { manifest, manifestBytes, cid, stats } = built
    expect(decodeManifest(manifestBytes)).toEqual(manifest)
    expect(manifest.name).toBe('test-image')
    expect(manifest.version).toBe('1.0')
    expect(manifest.size).toBe(image.length)
    expect(manifest.chunking).toEqual({ minBlocks: 2, avgBlocks: 4, maxBlocks: 16 })
    expect(manifest.chunks.map(c => ({ offset: c.offset, length: c.length }))).toEqual(seen)

    // every non-zero block is in exactly one chunk; the prefix is its digest's first bytes
    const nonZero: number[] = []
    for (let b = 0; b < image.length / BLOCK_SIZE; b++) {
      if (image.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE).some(x => x !== 0)) nonZero.push(b)
    }
    expect(stats).toMatchObject({ size: image.length, nonZeroBytes: nonZero.length * BLOCK_SIZE, blocks: nonZero.length, chunks: manifest.chunks.length })
    expect(manifest.blockPrefixes.length).toBe(nonZero.length * BLOCK_PREFIX_BYTES)
    const blocksInChunks = manifest.chunks.flatMap(c => Array.from({ length: c.length / BLOCK_SIZE }, (_, i) => c.offset / BLOCK_SIZE + i))
    expect(blocksInChunks).toEqual(nonZero)
    nonZero.forEach((b, i) => {
      expect(blockPrefix(manifest, i)).toEqual(hashBytes(image.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE)).subarray(0, BLOCK_PREFIX_BYTES))
    })
    for (const c of manifest.chunks) expect(c.digest).toEqual(hashBytes(image.subarray(c.offset, c.offset + c.length)))

    expect(cid.code).toBe(DAG_CBOR_CODE)
    const mp = join(tmp.path, 'manifest.cbor')
    writeFileSync(mp, manifestBytes)
    expect(toHex(cid.multihash.digest)).toBe(await b3sumFile(mp))
  })

  it('is deterministic: the same image gives the same bytes', async () => {
    const a = await buildManifest(path, { name: 'x', version: '1' })
    const b = await buildManifest(path, { name: 'x', version: '1', readBufferBytes: 3 * BLOCK_SIZE })
    expect(Buffer.compare(a.manifestBytes, b.manifestBytes)).toBe(0)
    expect(a.cid.toString()).toBe(b.cid.toString())
  })

  it('rejects bad names and parameters before reading the image', async () => {
    const missing = join(tmp.path, 'missing.img')
    await expect(buildManifest(missing, { name: '../evil', version: '1' })).rejects.toThrow(ValidationError)
    await expect(buildManifest(missing, { name: 'ok', version: 'a b' })).rejects.toThrow(/bad version/)
    await expect(buildManifest(missing, { name: 'ok', version: '1', chunking: { avgBlocks: 3 } })).rejects.toThrow(InvalidChunkingError)
    await expect(buildManifest(missing, { name: 'ok', version: '1' })).rejects.toThrow(InvalidImageError)
  })
})
