/**
 * Chunk ids: CIDv1, codec raw, multihash BLAKE3-256. The digest is plain
 * BLAKE3 of the bytes, so `b3sum` of the same bytes prints the same hex.
 * Hashing itself lives in chunker/ (native BLAKE3); this module only builds
 * and checks CIDs from digests.
 */
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { BLAKE3_CODE, DAG_CBOR_CODE, DIGEST_BYTES, RAW_CODE } from './constants.ts'
import { InvalidCidError } from './errors.ts'

/** The CID of a chunk whose BLAKE3 digest is `digest`. */
export function chunkCid (digest: Uint8Array): CID {
  if (digest.length !== DIGEST_BYTES) throw new InvalidCidError(`a BLAKE3 digest has ${DIGEST_BYTES} bytes, got ${digest.length}`)
  return CID.createV1(RAW_CODE, Digest.create(BLAKE3_CODE, digest))
}

/** The CID of a manifest whose (dag-cbor) bytes have BLAKE3 digest `digest`. */
export function manifestCid (digest: Uint8Array): CID {
  if (digest.length !== DIGEST_BYTES) throw new InvalidCidError(`a BLAKE3 digest has ${DIGEST_BYTES} bytes, got ${digest.length}`)
  return CID.createV1(DAG_CBOR_CODE, Digest.create(BLAKE3_CODE, digest))
}

/** Parses a chunk CID string, checking it is v1 / raw / BLAKE3-256. */
export function parseChunkCid (text: string): CID {
  let cid: CID
  try {
    cid = CID.parse(text)
  } catch (err) {
    throw new InvalidCidError(`not a CID: ${JSON.stringify(text.slice(0, 80))}`, { cause: err })
  }
  if (cid.version !== 1 || cid.code !== RAW_CODE || cid.multihash.code !== BLAKE3_CODE || cid.multihash.digest.length !== DIGEST_BYTES) {
    throw new InvalidCidError(`not a trimswarm chunk CID (need v1, raw, blake3-256): ${text.slice(0, 80)}`)
  }
  return cid
}

/** Lower-case hex of bytes (as b3sum prints digests). */
export function toHex (bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}
