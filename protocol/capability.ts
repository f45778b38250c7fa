/**
 * Capabilities: the coordinator's permission for one peer to fetch one image
 * version from LAN peers. dag-cbor `{ format, alg, capability, signature }`
 * where `capability` is the dag-cbor of `{ image, version, peer, expires }`
 * and `signature` is Ed25519 over CAPABILITY_SIGNATURE_CONTEXT || capability
 * bytes by the coordinator's key (the manifest key; the context tag keeps a
 * capability from ever verifying as a manifest and back). Verified offline by
 * the serving peer with the pinned coordinator key. Byte layout:
 * docs/PROTOCOL.md "Capabilities".
 */
import * as dagCbor from '@ipld/dag-cbor'
import { createSignedEnvelope } from './signing.ts'
import { ForbiddenError, ValidationError } from './errors.ts'
import { isValidName } from './manifest.ts'

/** Domain separation for capability signatures (differs from MANIFEST_SIGNATURE_CONTEXT). */
export const CAPABILITY_SIGNATURE_CONTEXT = 'trimswarm capability v1\n'

/** Capability envelope format version (field `format`). */
export const CAPABILITY_FORMAT = 1

/** Largest encoded capability (envelope) any decoder accepts; a real one is ~200 bytes. */
export const MAX_CAPABILITY_BYTES = 1024

/** Longest peer id string accepted (a libp2p Ed25519 peer id is 52 characters). */
export const MAX_PEER_ID_LENGTH = 128

/** Seconds of clock skew tolerated when checking `expires`. */
export const CAPABILITY_CLOCK_SKEW_SECONDS = 30

/** What a capability grants: `peer` may fetch chunks of `image`@`version` until `expires`. */
export interface Capability {
  image: string
  version: string
  /** The libp2p peer id (string form) the capability is bound to. */
  peer: string
  /** Unix time in seconds after which it is no longer valid. */
  expires: number
}

/** A capability that does not decode (wrong shape, types, size or names). */
export class InvalidCapabilityError extends ValidationError {
  static override name = 'InvalidCapabilityError'
  override name = 'InvalidCapabilityError'
}

/** A capability whose `expires` has passed. */
export class ExpiredCapabilityError extends ForbiddenError {
  static override name = 'ExpiredCapabilityError'
  override name = 'ExpiredCapabilityError'
}

/** A valid capability presented for another peer, image or version than it names. */
export class CapabilityMismatchError extends ForbiddenError {
  static override name = 'CapabilityMismatchError'
  override name = 'CapabilityMismatchError'
}

const envelope = createSignedEnvelope<Capability>({
  field: 'capability',
  format: CAPABILITY_FORMAT,
  maxBytes: MAX_CAPABILITY_BYTES,
  context: CAPABILITY_SIGNATURE_CONTEXT,
  validate: validateCapability,
  encode: encodeCapability,
  fail: (why, cause) => { throw new InvalidCapabilityError(`invalid capability: ${why}`, { cause }) },
  badSignature: 'capability signature does not verify against the coordinator key'
})
const PEER_ID_PATTERN = /^[A-Za-z0-9]+$/

function validateCapability (c: unknown): Capability {
  const fail = (why: string): never => { throw new InvalidCapabilityError(`invalid capability: ${why}`) }
  if (c == null || typeof c !== 'object' || Array.isArray(c)) fail('not a map')
  const o = c as Record<string, unknown>
  if (Object.keys(o).sort().join() !== 'expires,image,peer,version') fail('must be a map of exactly {image, version, peer, expires}')
  if (!isValidName(o.image)) fail('bad image name')
  if (!isValidName(o.version)) fail('bad version')
  if (typeof o.peer !== 'string' || o.peer.length < 1 || o.peer.length > MAX_PEER_ID_LENGTH || !PEER_ID_PATTERN.test(o.peer)) fail('bad peer id')
  if (typeof o.expires !== 'number' || !Number.isSafeInteger(o.expires) || o.expires < 0) fail('bad expiry')
  return { image: o.image as string, version: o.version as string, peer: o.peer as string, expires: o.expires as number }
}

/** The canonical dag-cbor bytes of a capability (what is signed). */
export function encodeCapability (c: Capability): Uint8Array {
  return dagCbor.encode(validateCapability({ image: c.image, version: c.version, peer: c.peer, expires: c.expires }))
}

/** Signs a capability with the coordinator's Ed25519 private key; returns the envelope bytes. */
export async function signCapability (c: Capability, privateKey: CryptoKey): Promise<Uint8Array> {
  return await envelope.sign(c, privateKey)
}

/**
 * Decodes an envelope without checking the signature (strict: size limit,
 * exact fields, canonical inner bytes). Throws InvalidCapabilityError.
 */
export function decodeCapability (bytes: Uint8Array): { capability: Capability, capabilityBytes: Uint8Array, signature: Uint8Array } {
  const { value, innerBytes, signature } = envelope.decode(bytes)
  return { capability: value, capabilityBytes: innerBytes, signature }
}

/** What a verifier checks a capability against. */
export interface CapabilityExpectation {
  /** The remote peer id of the connection the capability arrived on. */
  peer: string
  /** When set, the capability must name this image and version. */
  image?: string
  version?: string
  /** Unix seconds; default now. */
  now?: number
}

/**
 * Verifies a capability offline: signature by `publicKey`, not expired, bound
 * to `expect.peer` (and the image version when given). Throws
 * InvalidCapabilityError, InvalidSignatureError, ExpiredCapabilityError or
 * CapabilityMismatchError.
 */
export async function verifyCapability (bytes: Uint8Array, publicKey: CryptoKey, expect: CapabilityExpectation): Promise<Capability> {
  const capability = await envelope.open(bytes, publicKey)
  const now = expect.now ?? Math.floor(Date.now() / 1000)
  if (now > capability.expires + CAPABILITY_CLOCK_SKEW_SECONDS) {
    throw new ExpiredCapabilityError(`capability for ${capability.image}@${capability.version} expired at ${capability.expires} (now ${now})`)
  }
  if (capability.peer !== expect.peer) throw new CapabilityMismatchError(`capability is bound to peer ${capability.peer}, presented by ${expect.peer}`)
  if ((expect.image != null && capability.image !== expect.image) || (expect.version != null && capability.version !== expect.version)) {
    throw new CapabilityMismatchError(`capability is for ${capability.image}@${capability.version}, not ${String(expect.image)}@${String(expect.version)}`)
  }
  return capability
}
