import { mkdirSync, readdirSync, truncateSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashBlocks, hashBytes } from '../../chunker/blake3.ts'
import { cutBlocks, type ChunkingInit } from '../../chunker/block-chunker.ts'
import { InvalidImageError } from '../../chunker/errors.ts'
import { checkImage, scanImage, type ScanInit } from '../../chunker/image-scan.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'
import { buildImage, type Recipe } from './synthetic-image.ts'

let tmp: TempDir
beforeAll(async () => { tmp = await tempDir('trimswarm-scan-') })
afterAll(async () => { await tmp.cleanup() })

interface Got { offset: number, length: number, digest: Uint8Array, blockDigests: Uint8Array }

/** Scans, checking each chunk's bytes view against the image while it is valid. */
async function scan (path: string, image: Uint8Array, init: ScanInit): Promise<Got[]> {
  const out: Got[] = []
  for await (const c of scanImage(path, init)) {
    expect(Buffer.compare(c.bytes, image.subarray(c.offset, c.offset + c.length))).toBe(0)
    out.push({ offset: c.offset, length: c.length, digest: c.digest, blockDigests: c.blockDigests })
  }
  return out
}

/** What the whole-image rule says, computed from all the bytes at once. */
function reference (image: Uint8Array, init: ChunkingInit): Got[] {
  const digests = hashBlocks(image)
  const isZero = (b: number): boolean => image.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE).every(x => x === 0)
  return cutBlocks(digests, isZero, init).map(r => {
    const offset = r.firstBlock * BLOCK_SIZE
    const length = r.blocks * BLOCK_SIZE
    return { offset, length, digest: hashBytes(image.subarray(offset, offset + length)), blockDigests: digests.slice(r.firstBlock * 32, (r.firstBlock + r.blocks) * 32) }
  })
}

/** Chunks plus the regions left out tile the image, and every left-out block is zero. */
function expectTiles (image: Uint8Array, chunks: Got[]): void {
  let end = 0
  for (const c of chunks) {
    expect(c.offset).toBeGreaterThanOrEqual(end)
    expect(image.subarray(end, c.offset).every(x => x === 0)).toBe(true)
    for (let o = c.offset; o < c.offset + c.length; o += BLOCK_SIZE) {
      expect(image.subarray(o, o + BLOCK_SIZE).some(x => x !== 0)).toBe(true)
    }
    end = c.offset + c.length
  }
  expect(image.subarray(end).every(x => x === 0)).toBe(true)
}

const RECIPE: Recipe = {
  seed: 11,
  segments: [
    { random: 37 }, { zero: 3 }, { random: 1 }, { zero: 1 }, { nearlyZero: 0 }, { nearlyZero: 4095 },
    { random: 150 }, { copy: 30, from: 5 }, { zero: 20 }, { random: 9 }, { copy: 60, from: 45 }, { random: 70 }, { zero: 2 }
  ]
}

describe('scanImage', () => {
  const small: ChunkingInit = { minBlocks: 2, avgBlocks: 8, maxBlocks: 12 }
  let image: Uint8Array
  let path: string
  beforeAll(() => {
    image = buildImage(RECIPE)
    path = join(tmp.path, 'synthetic.img')
    writeFileSync(path, image)
  })

  it.each([1, 2, 3, 5, 7, 11, 13, 64, 1000])('gives the whole-image result with reads of %i blocks', async (readBlocks) => {
    const got = await scan(path, image, { ...small, readBufferBytes: readBlocks * BLOCK_SIZE })
    expect(got).toEqual(reference(image, small))
    expectTiles(image, got)
  })

  it('with default chunking and read size', async () => {
    const got = await scan(path, image, {})
    expect(got).toEqual(reference(image, {}))
    expectTiles(image, got)
  })

  it('treats a block with a single non-zero byte as data', async () => {
    const got = await scan(path, image, small)
    const nearly = [40 + 1 + 1, 40 + 1 + 1 + 1].map(b => b * BLOCK_SIZE)
    for (const o of nearly) expect(got.some(c => c.offset <= o && o < c.offset + c.length)).toBe(true)
  })

  it('on an all-zero image yields nothing', async () => {
    const p = join(tmp.path, 'zeros.img')
    writeFileSync(p, new Uint8Array(16 * BLOCK_SIZE))
    expect(await scan(p, new Uint8Array(16 * BLOCK_SIZE), {})).toEqual([])
  })

  it('on a real ext4 image gives the whole-image result with reads that split chunks', async () => {
    const img = await makeTestImage(tmp.path, { name: 'ext4', sizeMiB: 8, seed: 3 })
    const bytes = new Uint8Array(await readFile(img.path))
    const want = reference(bytes, {})
    expect(want.length).toBeGreaterThan(10)
    expect(await scan(img.path, bytes, { readBufferBytes: 5 * BLOCK_SIZE })).toEqual(want)
    const got = await scan(img.path, bytes, { readBufferBytes: 256 * 1024 })
    expect(got).toEqual(want)
    expectTiles(bytes, got)
  })

  it('refuses an image that shrinks while being read', async () => {
    const p = join(tmp.path, 'shrinking.img')
    writeFileSync(p, image)
    await expect((async () => {
      for await (const c of scanImage(p, { ...small, readBufferBytes: 8 * BLOCK_SIZE })) {
        if (c.offset === 0) truncateSync(p, 100 * BLOCK_SIZE)
      }
    })()).rejects.toThrow(/changed while being read: ended at 409600 bytes, expected 1576960/)
  })

  it('closes the image when the consumer stops early', async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length
    const before = fds()
    for (let i = 0; i < 5; i++) {
      for await (const c of scanImage(path, small)) {
        expect(c.offset).toBe(0)
        break
      }
    }
    expect(fds()).toBe(before)
  })

  it('stops when its signal is aborted', async () => {
    const ac = new AbortController()
    const seen: number[] = []
    await expect((async () => {
      for await (const c of scanImage(path, { ...small, readBufferBytes: 4 * BLOCK_SIZE, signal: ac.signal })) {
        seen.push(c.offset)
        ac.abort()
      }
    })()).rejects.toThrow(/abort/i)
    expect(seen.length).toBeLessThan(3)
  })
})

describe('bad images', () => {
  it.each([
    ['missing', (d: string) => join(d, 'nope.img'), /does not exist/],
    ['a directory', (d: string) => { mkdirSync(join(d, 'adir'), { recursive: true }); return join(d, 'adir') }, /is a directory/],
    ['empty', (d: string) => { writeFileSync(join(d, 'empty.img'), ''); return join(d, 'empty.img') }, /is empty/],
    ['not whole blocks', (d: string) => { writeFileSync(join(d, 'odd.img'), new Uint8Array(3 * BLOCK_SIZE + 100)); return join(d, 'odd.img') }, /12388 bytes, not a multiple of the 4096-byte block size/],
    ['not a regular file', () => '/dev/null', /not a regular file/]
  ])('%s: InvalidImageError naming the problem', async (_what, make, message) => {
    const p = make(tmp.path)
    await expect(checkImage(p)).rejects.toThrow(InvalidImageError)
    await expect(checkImage(p)).rejects.toThrow(message)
    const it = scanImage(p)
    await expect(it.next()).rejects.toThrow(message)
  })
})
