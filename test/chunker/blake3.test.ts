import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { blake3Hasher, chunkCidOf, hashBlocks, hashBytes, hashParts, manifestCidOf, verifyChunk } from '../../chunker/blake3.ts'
import { toHex } from '../../protocol/block-id.ts'
import { BLAKE3_CODE, BLOCK_SIZE, DAG_CBOR_CODE, RAW_CODE } from '../../protocol/constants.ts'
import { HashMismatchError } from '../../protocol/errors.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'
import { b3sumMany as b3sum } from './helpers.ts'

const KiB = 1024
const MiB = 1024 * KiB
// Around BLAKE3's 1 KiB chunk and every power-of-two tree boundary we use, and past
// the 1 MiB / 8 MiB sizes where blake3-wasm 3.0.0 went wrong (FACTS.md).
const SIZES = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 2049, 3 * KiB, 4095, 4096, 4097, 8192,
  64 * KiB - 1, 64 * KiB, 64 * KiB + 1, MiB - 1, MiB, MiB + 1, 4 * MiB + 4096, 8 * MiB + 1, 9 * MiB, 17 * MiB]

let tmp: TempDir
beforeAll(async () => { tmp = await tempDir('trimswarm-blake3-') })
afterAll(async () => { await tmp.cleanup() })

describe('BLAKE3 against the real b3sum', () => {
  it('hashBytes equals b3sum at every size', () => {
    const data = SIZES.map((n, i) => seededBytes(1000 + i, n))
    const paths = data.map((d, i) => {
      const p = join(tmp.path, `size-${SIZES[i]}`)
      writeFileSync(p, d)
      return p
    })
    const expected = b3sum(paths)
    for (const [i, d] of data.entries()) {
      expect(toHex(hashBytes(d)), `size ${SIZES[i]}`).toBe(expected[i])
    }
  })

  it('hashBlocks gives every 4 KiB block digest in order, equal to b3sum of that block', () => {
    const blocks = 300
    const buf = seededBytes(7, blocks * BLOCK_SIZE)
    buf.fill(0, 5 * BLOCK_SIZE, 6 * BLOCK_SIZE) // a zero block hashes like any other
    const digests = hashBlocks(buf)
    expect(digests.length).toBe(blocks * 32)
    const picked = [0, 1, 5, 150, 299]
    const paths = picked.map(b => {
      const p = join(tmp.path, `block-${b}`)
      writeFileSync(p, buf.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE))
      return p
    })
    const expected = b3sum(paths)
    for (const [i, b] of picked.entries()) expect(toHex(digests.subarray(b * 32, (b + 1) * 32))).toBe(expected[i])
    for (let b = 0; b < blocks; b++) {
      expect(digests.subarray(b * 32, (b + 1) * 32)).toEqual(hashBytes(buf.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE)))
    }
  })

  it('hashBlocks writes into a given output and rejects partial blocks', () => {
    const buf = seededBytes(9, 4 * BLOCK_SIZE)
    const out = new Uint8Array(4 * 32 + 5)
    expect(hashBlocks(buf, out)).toBe(out)
    expect(out.subarray(0, 128)).toEqual(hashBlocks(buf))
    expect(() => hashBlocks(buf.subarray(0, BLOCK_SIZE + 1))).toThrow(RangeError)
    expect(() => hashBlocks(buf, new Uint8Array(64))).toThrow(RangeError)
  })
})

describe('CIDs and verification', () => {
  const bytes = seededBytes(42, 3 * BLOCK_SIZE)
  let p: string
  beforeAll(() => {
    p = join(tmp.path, 'chunk')
    writeFileSync(p, bytes)
  })

  it('chunkCidOf is v1 raw blake3 whose digest is b3sum of the bytes', () => {
    const cid = CID.parse(chunkCidOf(bytes).toString())
    expect(cid.version).toBe(1)
    expect(cid.code).toBe(RAW_CODE)
    expect(cid.multihash.code).toBe(BLAKE3_CODE)
    expect(toHex(cid.multihash.digest)).toBe(b3sum([p])[0])
  })

  it('manifestCidOf is v1 dag-cbor blake3', () => {
    const cid = manifestCidOf(bytes)
    expect(cid.code).toBe(DAG_CBOR_CODE)
    expect(toHex(cid.multihash.digest)).toBe(b3sum([p])[0])
  })

  it('the multiformats hasher gives the same multihash', async () => {
    const mh = await blake3Hasher.digest(bytes)
    expect(mh.code).toBe(BLAKE3_CODE)
    expect(toHex(mh.digest)).toBe(b3sum([p])[0])
    expect(mh.bytes).toEqual(chunkCidOf(bytes).multihash.bytes)
  })

  it('verifyChunk accepts the right digest and throws HashMismatchError on any change', () => {
    const digest = hashBytes(bytes)
    expect(() => { verifyChunk(bytes, digest) }).not.toThrow()
    const changed = bytes.slice()
    changed[BLOCK_SIZE + 17] ^= 1
    expect(() => { verifyChunk(changed, digest) }).toThrow(HashMismatchError)
    expect(() => { verifyChunk(bytes.subarray(1), digest) }).toThrow(HashMismatchError)
  })

  it('hashParts and verifyChunk over pieces equal hashBytes of the joined bytes, at any split (BLAKE3 1 KiB chunk edges included)', () => {
    const digest = hashBytes(bytes)
    for (const cuts of [[1], [1024], [1023, 1025], [BLOCK_SIZE, 2 * BLOCK_SIZE + 5], [7, 8, 9, 65519]]) {
      const at = [0, ...cuts.filter(c => c < bytes.length), bytes.length]
      const pieces = at.slice(1).map((end, k) => bytes.subarray(at[k], end))
      expect(toHex(hashParts(pieces))).toBe(toHex(digest))
      expect(() => { verifyChunk(pieces, digest) }).not.toThrow()
      const bad = pieces.map(p => p.slice())
      bad[bad.length - 1][0] ^= 1
      expect(() => { verifyChunk(bad, digest) }).toThrow(HashMismatchError)
    }
  })
})
