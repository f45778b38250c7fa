/**
 * Golden vectors: fixed images -> chunk boundaries, chunk CIDs and manifest
 * CIDs recorded in test/fixtures/chunker-golden.json (digests from b3sum).
 * A failure here means the chunk rule, the CID form or the manifest encoding
 * changed: every published manifest and stored chunk would change with it.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashBytes } from '../../chunker/blake3.ts'
import { buildManifest } from '../../chunker/build-manifest.ts'
import { scanImage } from '../../chunker/image-scan.ts'
import { chunkCid, toHex } from '../../protocol/block-id.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import type { GoldenResult } from '../fixtures/make-chunker-golden.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'
import { buildImage } from './synthetic-image.ts'

const golden = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/chunker-golden.json'), 'utf8')) as { cases: GoldenResult[] }

let tmp: TempDir
beforeAll(async () => { tmp = await tempDir('trimswarm-golden-') })
afterAll(async () => { await tmp.cleanup() })

describe.each(golden.cases.map(c => [c.name, c] as const))('golden case %s', (_name, g) => {
  let path: string
  beforeAll(() => {
    path = join(tmp.path, `${g.name}.img`)
    writeFileSync(path, buildImage(g.recipe))
  })

  it('the recipe still builds the recorded image', () => {
    const image = readFileSync(path)
    expect(image.length).toBe(g.imageSize)
    expect(toHex(hashBytes(image))).toBe(g.imageBlake3)
  })

  it.each([undefined, 3 * BLOCK_SIZE])('chunks are the recorded ones (read buffer %s)', async (readBufferBytes) => {
    const got: Array<{ offset: number, length: number, cid: string }> = []
    for await (const c of scanImage(path, { ...g.chunking, readBufferBytes })) {
      got.push({ offset: c.offset, length: c.length, cid: chunkCid(c.digest).toString() })
    }
    expect(got).toEqual(g.chunks)
  })

  it('the manifest CID is the recorded one', async () => {
    const built = await buildManifest(path, { name: g.manifestName, version: g.manifestVersion, chunking: g.chunking })
    expect(built.manifestBytes.length).toBe(g.manifestBytes)
    expect(built.cid.toString()).toBe(g.manifestCid)
  })
})

describe('what the golden images show', () => {
  it('content that moves is cut the same way: the copied run shares chunks with its original', () => {
    const g = golden.cases.find(c => c.name === 'mixed-small')!
    // recipe: blocks 20..119 are copied to 337..436 (337 = 120+8+1+1+2+3+1+1+200 blocks come first)
    const inRange = (a: number, b: number): Set<string> => new Set(g.chunks.filter(c => c.offset >= a * BLOCK_SIZE && c.offset + c.length <= b * BLOCK_SIZE).map(c => c.cid))
    const original = inRange(20, 120)
    const copy = inRange(337, 437)
    const shared = [...copy].filter(cid => original.has(cid))
    expect(copy.size).toBeGreaterThan(10)
    expect(shared.length).toBeGreaterThan(copy.size * 0.7)
    // and unrelated random data shares none
    expect([...inRange(137, 337)].filter(cid => original.has(cid))).toEqual([])
  })
})
