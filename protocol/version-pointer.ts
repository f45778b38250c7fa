/**
 * The signed version pointer: what "latest" of an image means, signed by the
 * coordinator, so a man in the middle (or a replayed old answer) cannot move an
 * agent to an older version. dag-cbor `{ format, alg, pointer, signature }`
 * where `pointer` is the dag-cbor of `{ image, version, manifestCid, seq, time }`
 * and `signature` is Ed25519 over VERSION_POINTER_SIGNATURE_CONTEXT || pointer
 * bytes by the coordinator's (manifest) key; the context tag keeps a pointer
 * from ever verifying as a manifest or a capability. Byte layout:
 * docs/PROTOCOL.md "Signed version pointer".
 */
import * as dagCbor from '@ipld/dag-cbor'
import { InvalidSignatureError, ValidationError } from './errors.ts'
import { isValidName } from './manifest.ts'
import { createSignedEnvelope } from './signing.ts'

/** Domain separation for version-pointer signatures. */
export const VERSION_POINTER_SIGNATURE_CONTEXT = 'trimswarm version pointer v1\n'

/** Version-pointer envelope format version (field `format`). */
export const VERSION_POINTER_FORMAT = 1

/** Largest encoded pointer (envelope) any decoder accepts; a real one is ~250 bytes. */
export const MAX_VERSION_POINTER_BYTES = 1024

/** Media type of a signed version pointer. */
export const VERSION_POINTER_MEDIA_TYPE = 'application/vnd.trimswarm.pointer+cbor'

/** "The latest version of `image` is `version`, whose manifest is `manifestCid`." */
export interface VersionPointer {
  image: string
  version: string
  /** CID (base32 text) of the version's manifest bytes. */
  manifestCid: string
  /**
   * The version's publish sequence on this coordinator: every version published
   * gets a higher number than any before it, so a lower `seq` is an older version.
   */
  seq: number
  /** Unix seconds at which the coordinator signed the pointer. */
  time: number
}

/** A version pointer that does not decode (wrong shape, types, size or names). */
export class InvalidVersionPointerError extends ValidationError {
  static override name = 'InvalidVersionPointerError'
  override name = 'InvalidVersionPointerError'
}

const envelope = createSignedEnvelope<VersionPointer>({
  field: 'pointer',
  format: VERSION_POINTER_FORMAT,
  maxBytes: MAX_VERSION_POINTER_BYTES,
  context: VERSION_POINTER_SIGNATURE_CONTEXT,
  validate: validatePointer,
  encode: encodeVersionPointer,
  fail: (why, cause) => { throw new InvalidVersionPointerError(`invalid version pointer: ${why}`, { cause }) },
  badSignature: 'version pointer signature does not verify against the coordinator key (tampered, or signed by another key)'
})
const CID_TEXT = /^[a-z0-9]{10,100}$/

function validatePointer (p: unknown): VersionPointer {
  const fail = (why: string): never => { throw new InvalidVersionPointerError(`invalid version pointer: ${why}`) }
  if (p == null || typeof p !== 'object' || Array.isArray(p)) fail('not a map')
  const o = p as Record<string, unknown>
  if (Object.keys(o).sort().join() !== 'image,manifestCid,seq,time,version') fail('must be a map of exactly {image, version, manifestCid, seq, time}')
  if (!isValidName(o.image)) fail('bad image name')
  if (!isValidName(o.version)) fail('bad version')
  if (typeof o.manifestCid !== 'string' || !CID_TEXT.test(o.manifestCid)) fail('bad manifest CID')
  if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 1) fail('bad sequence number')
  if (typeof o.time !== 'number' || !Number.isSafeInteger(o.time) || o.time < 0) fail('bad time')
  return { image: o.image as string, version: o.version as string, manifestCid: o.manifestCid as string, seq: o.seq as number, time: o.time as number }
}

/** The canonical dag-cbor bytes of a pointer (what is signed). */
export function encodeVersionPointer (p: VersionPointer): Uint8Array {
  return dagCbor.encode(validatePointer({ image: p.image, version: p.version, manifestCid: p.manifestCid, seq: p.seq, time: p.time }))
}

/** Signs a pointer with the coordinator's Ed25519 private key; returns the envelope bytes. */
export async function signVersionPointer (p: VersionPointer, privateKey: CryptoKey): Promise<Uint8Array> {
  return await envelope.sign(p, privateKey)
}

/**
 * Decodes an envelope without checking the signature (strict: size limit,
 * exact fields, canonical inner bytes). Throws InvalidVersionPointerError.
 */
export function decodeVersionPointer (bytes: Uint8Array): { pointer: VersionPointer, pointerBytes: Uint8Array, signature: Uint8Array } {
  const { value, innerBytes, signature } = envelope.decode(bytes)
  return { pointer: value, pointerBytes: innerBytes, signature }
}

/**
 * Verifies a pointer against the trusted key and that it is about `image`.
 * Throws InvalidVersionPointerError or InvalidSignatureError.
 */
export async function openVersionPointer (bytes: Uint8Array, publicKey: CryptoKey, image: string): Promise<VersionPointer> {
  const pointer = await envelope.open(bytes, publicKey)
  if (pointer.image !== image) throw new InvalidSignatureError(`got the signed latest version of image ${pointer.image}, asked for ${image}`)
  return pointer
}
