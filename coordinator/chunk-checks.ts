/**
 * Checks every BlockStore implementation makes before touching its storage
 * (directory-block-store.ts, s3-block-store.ts): one copy, so both stores
 * refuse exactly the same CIDs and bytes.
 */
import type { CID } from 'multiformats/cid'
import { verifyChunk } from '../chunker/blake3.ts'
import { toHex } from '../protocol/block-id.ts'
import { BLAKE3_CODE, DIGEST_BYTES, RAW_CODE } from '../protocol/constants.ts'
import { HashMismatchError, InvalidCidError, ValidationError } from '../protocol/errors.ts'

/** Hex digest of a chunk CID; throws InvalidCidError for anything but v1 / raw / BLAKE3-256. */
export function chunkDigestHex (cid: CID): string {
  if (cid?.version !== 1 || cid.code !== RAW_CODE || cid.multihash?.code !== BLAKE3_CODE || cid.multihash.digest.length !== DIGEST_BYTES) {
    throw new InvalidCidError(`not a trimswarm chunk CID (need v1, raw, blake3-256): ${String(cid).slice(0, 80)}`)
  }
  return toHex(cid.multihash.digest)
}

function isAllZero (bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false
  return true
}

/**
 * Throws ValidationError for empty or all-zero bytes (zero regions are never
 * stored) and HashMismatchError when the bytes do not hash to `cid`: a put
 * that fails here has stored nothing.
 */
export function checkChunkForPut (cid: CID, bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new ValidationError(`chunk ${cid.toString()} is empty`)
  if (isAllZero(bytes)) throw new ValidationError(`chunk ${cid.toString()} is all zeros; zero regions are never stored`)
  verifyChunk(bytes, cid.multihash.digest)
}

/**
 * Re-hashes a chunk read back from storage; on a mismatch calls `logCorrupt`
 * (which names the file or object in the coordinator's log) and throws
 * HashMismatchError. The message leaves out where the chunk lives: error
 * messages reach API clients.
 */
export function verifyStoredChunk (cid: CID, bytes: Uint8Array, logCorrupt: () => void): void {
  try {
    verifyChunk(bytes, cid.multihash.digest)
  } catch (err) {
    if (!(err instanceof HashMismatchError)) throw err
    logCorrupt()
    throw new HashMismatchError(`stored chunk ${cid.toString()} is corrupt` +
      ` (the coordinator's log says where it is stored; run trimswarm coordinator fsck)`, { cause: err })
  }
}

/**
 * Puts of the same chunk in flight in one process share one write: returns a
 * function that runs `write` for `key` unless a write of that key is running,
 * in which case the caller waits for that one. The write takes no signal: it may
 * be shared by several callers, and one aborting must not fail the others.
 */
export function createSharedWrites (): (key: string, write: () => Promise<void>) => Promise<void> {
  const inflight = new Map<string, Promise<void>>()
  return async (key, write) => {
    let p = inflight.get(key)
    if (p == null) {
      p = write().finally(() => inflight.delete(key))
      inflight.set(key, p)
    }
    await p
  }
}
