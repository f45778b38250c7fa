/**
 * The one BLAKE3 of trimswarm: native `@napi-rs/blake-hash` (see
 * docs/ARCHITECTURE.md "Hashing" for the choice and the measurements).
 * Digests are plain BLAKE3-256 of the bytes, so `b3sum` prints the same hex.
 */
import { blake3, Blake3Hasher } from '@napi-rs/blake-hash'
import { base32 } from 'multiformats/bases/base32'
import type { CID } from 'multiformats/cid'
import { from as hasherFrom } from 'multiformats/hashes/hasher'
import { equals } from 'multiformats/bytes'
import { chunkCid, manifestCid, toHex } from '../protocol/block-id.ts'
import { BLAKE3_CODE, BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { HashMismatchError } from '../protocol/errors.ts'

/** BLAKE3-256 digest of `bytes` (any length; a fresh 32-byte array). */
export function hashBytes (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const d = blake3(bytes)
  const out = new Uint8Array(DIGEST_BYTES)
  out.set(d)
  return out
}

/**
 * BLAKE3-256 digest of `bytes` as the addon returns it, not copied into a fresh array
 * as hashBytes does: for a comparison made at once (a block against its prefix, per
 * block on the sync's hot path), not for keeping.
 */
export function digestOf (bytes: Uint8Array): Uint8Array {
  return blake3(bytes)
}

// One incremental hasher for hashParts (reset before each use; JS is single-threaded).
let partsHasher: Blake3Hasher | undefined

/**
 * BLAKE3-256 digest of the concatenation of `parts` (e.g. a chunk received in
 * several pieces), without joining them into one array first.
 */
export function hashParts (parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (parts.length === 1) return hashBytes(parts[0])
  partsHasher ??= new Blake3Hasher()
  partsHasher.reset()
  for (const p of parts) partsHasher.update(p)
  const out = new Uint8Array(DIGEST_BYTES)
  out.set(partsHasher.digestBuffer())
  return out
}

/**
 * Digests of every BLOCK_SIZE block of `buf`, concatenated (32 bytes per block).
 * One native call per block is the floor of this addon (it has no batch entry
 * point); batching here keeps the loop out of callers and allows `out` reuse.
 */
export function hashBlocks (buf: Uint8Array, out?: Uint8Array): Uint8Array {
  if (buf.length % BLOCK_SIZE !== 0) throw new RangeError(`hashBlocks needs a multiple of ${BLOCK_SIZE} bytes, got ${buf.length}`)
  const n = buf.length / BLOCK_SIZE
  const result = out ?? new Uint8Array(n * DIGEST_BYTES)
  if (result.length < n * DIGEST_BYTES) throw new RangeError(`hashBlocks output holds ${result.length} bytes, needs ${n * DIGEST_BYTES}`)
  for (let i = 0; i < n; i++) {
    result.set(blake3(buf.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)), i * DIGEST_BYTES)
  }
  return result
}

/** BLAKE3-256 as a multiformats hasher (multihash code 0x1e), for code that takes a MultihashHasher. */
export const blake3Hasher = hasherFrom({ name: 'blake3', code: BLAKE3_CODE, encode: hashBytes })

/** The CID (v1, raw, BLAKE3-256) of a chunk's bytes. */
export function chunkCidOf (bytes: Uint8Array): CID {
  return chunkCid(hashBytes(bytes))
}

/**
 * The text form (base32, `bafkr4i...`) of the chunk CID for `digest`, equal to
 * `chunkCid(digest).toString()`. Use it in loops over many chunks: CID#toString
 * caches every string in a WeakMap keyed by the CID object, and over an image's
 * 30k chunks that alone raised a scan's peak RSS from 96 to 169 MB.
 */
export function chunkCidText (digest: Uint8Array): string {
  return base32.encode(chunkCid(digest).bytes)
}

/** The CID (v1, dag-cbor, BLAKE3-256) of encoded manifest bytes. */
export function manifestCidOf (manifestBytes: Uint8Array): CID {
  return manifestCid(hashBytes(manifestBytes))
}

/** Throws HashMismatchError unless `bytes` (one array, or the pieces of one chunk in order) hash to `digest`. */
export function verifyChunk (bytes: Uint8Array | readonly Uint8Array[], digest: Uint8Array): void {
  const actual = bytes instanceof Uint8Array ? hashBytes(bytes) : hashParts(bytes)
  if (!equals(actual, digest)) {
    const length = bytes instanceof Uint8Array ? bytes.length : bytes.reduce((n, p) => n + p.length, 0)
    throw new HashMismatchError(`chunk of ${length} bytes hashes to ${toHex(actual)}, expected ${toHex(digest)}`)
  }
}
