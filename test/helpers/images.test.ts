import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  b3sumBytes, b3sumFile, createPrng, makeHostFolder, makeTestImage, makeUpdatedImage, seededBytes, tempDir,
  type HostFolder, type TempDir, type TestImage, type UpdatedImage
} from './images.ts'

const BLOCK = 4096

/** Digests of the non-zero 4 KiB-aligned blocks of some bytes (sha256 is enough to compare blocks). */
function blockSet (bytes: Uint8Array): Set<string> {
  const out = new Set<string>()
  for (let o = 0; o + BLOCK <= bytes.length; o += BLOCK) {
    const b = bytes.subarray(o, o + BLOCK)
    if (b.every(x => x === 0)) continue
    out.add(createHash('sha256').update(b).digest('hex'))
  }
  return out
}

describe('test image helpers', () => {
  let dir: TempDir
  let base: TestImage
  let next: UpdatedImage
  let host: HostFolder

  beforeAll(async () => {
    dir = await tempDir()
    base = await makeTestImage(dir.path, { name: 'base', sizeMiB: 8 })
    next = await makeUpdatedImage(dir.path, base, { name: 'next' })
    host = await makeHostFolder(dir.path, base)
  })
  afterAll(async () => { await dir.cleanup() })

  it('b3sum helpers match the BLAKE3 reference vector', async () => {
    // BLAKE3 of the empty input, from the BLAKE3 spec's test vectors.
    expect(await b3sumBytes(new Uint8Array(0))).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262')
    expect(await b3sumFile(base.path)).toMatch(/^[0-9a-f]{64}$/)
  })

  it('the PRNG is deterministic per seed', () => {
    expect(seededBytes(7, 64)).toEqual(seededBytes(7, 64))
    expect(seededBytes(7, 64)).not.toEqual(seededBytes(8, 64))
    const p = createPrng(1)
    for (let i = 0; i < 1000; i++) {
      const v = p.int(3, 5)
      expect(v >= 3 && v <= 5).toBe(true)
    }
  })

  it('builds a raw ext4 image of the requested size, reproducibly', async () => {
    expect((await stat(base.path)).size).toBe(8 * 1024 * 1024)
    const img = await readFile(base.path)
    // ext4 superblock magic 0xEF53 at byte 1024 + 56.
    expect(img.readUInt16LE(1024 + 56)).toBe(0xef53)
    const again = await makeTestImage(dir.path, { name: 'again', sizeMiB: 8 })
    expect(await b3sumFile(again.path)).toBe(await b3sumFile(base.path))
    const other = await makeTestImage(dir.path, { name: 'other', sizeMiB: 8, seed: 99 })
    expect(await b3sumFile(other.path)).not.toBe(await b3sumFile(base.path))
  })

  it('puts file data in 4 KiB-aligned image blocks, with holes and repeated blocks', async () => {
    const img = await readFile(base.path)
    const imageBlocks = blockSet(img)
    const kinds = new Set(base.files.map(f => f.kind))
    expect([...kinds].sort()).toEqual(['copy', 'random', 'repeated', 'sparse', 'text'])
    for (const f of base.files.filter(f => f.size >= BLOCK)) {
      const first = (await readFile(join(base.tree, f.path))).subarray(0, BLOCK)
      expect(imageBlocks.has(createHash('sha256').update(first).digest('hex')), f.path).toBe(true)
    }
    let zero = 0
    for (let o = 0; o < img.length; o += BLOCK) if (img.subarray(o, o + BLOCK).every(x => x === 0)) zero++
    expect(zero).toBeGreaterThan(0)
  })

  it('the updated image shares most blocks with the base but not all', async () => {
    expect(next.changed.length).toBeGreaterThan(0)
    expect(next.added.length).toBeGreaterThan(0)
    expect(next.removed.length).toBeGreaterThan(0)
    const a = blockSet(await readFile(base.path))
    const b = blockSet(await readFile(next.path))
    const common = [...b].filter(h => a.has(h)).length
    expect(common / b.size).toBeGreaterThan(0.3)
    expect(common / b.size).toBeLessThan(0.95)
  })

  it('the host folder shares block-aligned content with the image', async () => {
    expect(host.shared.length).toBeGreaterThan(0)
    const imageBlocks = blockSet(await readFile(base.path))
    let hostShared = 0
    for (const rel of host.files) {
      for (const h of blockSet(await readFile(join(host.path, rel)))) if (imageBlocks.has(h)) hostShared++
    }
    expect(hostShared).toBeGreaterThan(10)
    const shifted = blockSet(await readFile(join(host.path, 'shifted/with-header.bin')))
    expect([...shifted].filter(h => imageBlocks.has(h)).length).toBe(0)
  })
})
