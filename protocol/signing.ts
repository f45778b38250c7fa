/**
 * The one rule of every Ed25519 signature of trimswarm (what is signed is a
 * context tag followed by the object's bytes), and the one strict decoder of
 * the small signed envelopes `{ format, alg, <field>, signature }` that
 * capabilities and version pointers share.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { equals } from 'multiformats/bytes'
import { SIGNATURE_ALGORITHM } from './constants.ts'
import { InvalidSignatureError } from './errors.ts'

/** `context` (UTF-8 tag, ending in a newline) followed by `bytes`: the message that is signed and verified. */
export function signedMessage (context: Uint8Array, bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const msg = new Uint8Array(context.length + bytes.length)
  msg.set(context)
  msg.set(bytes, context.length)
  return msg
}

/** How to decode one kind of small signed envelope. */
export interface SignedEnvelopeSpec<T> {
  /** Name of the field holding the inner dag-cbor bytes (`capability`, `pointer`). */
  field: string
  format: number
  maxBytes: number
  /** Checks the decoded inner value (throws through `fail`). */
  validate: (inner: unknown) => T
  /** The canonical encoding of a valid inner value. */
  encode: (value: T) => Uint8Array
  /** Throws the kind's error class with `why`. */
  fail: (why: string, cause?: unknown) => never
}

/**
 * Decodes a signed envelope without checking the signature (strict: size
 * limit, exact fields, `alg`, a 64-byte signature, canonical inner bytes).
 */
export function decodeSignedEnvelope<T> (bytes: unknown, spec: SignedEnvelopeSpec<T>): { value: T, innerBytes: Uint8Array, signature: Uint8Array } {
  const { field, fail } = spec
  if (!(bytes instanceof Uint8Array)) fail('not bytes')
  const b = bytes as Uint8Array
  if (b.length > spec.maxBytes) fail(`${b.length} bytes, over the limit of ${spec.maxBytes}`)
  let raw: unknown
  try {
    raw = dagCbor.decode(b)
  } catch (err) {
    fail(`not valid dag-cbor: ${(err as Error).message}`, err)
  }
  const e = raw as Record<string, unknown>
  if (e == null || typeof e !== 'object' || Array.isArray(e) || Object.keys(e).sort().join() !== ['alg', field, 'format', 'signature'].sort().join()) {
    fail(`envelope must be a map of exactly {format, alg, ${field}, signature}`)
  }
  if (e.format !== spec.format) fail(`unsupported format ${String(e.format)}`)
  if (typeof e.alg !== 'string' || e.alg !== SIGNATURE_ALGORITHM) {
    fail(`unsupported signature algorithm ${typeof e.alg === 'string' ? JSON.stringify(e.alg.slice(0, 40)) : typeof e.alg}`)
  }
  const innerBytes = e[field]
  const signature = e.signature
  if (!(innerBytes instanceof Uint8Array) || !(signature instanceof Uint8Array) || signature.length !== 64) fail('envelope fields have the wrong types')
  let inner: unknown
  try {
    inner = dagCbor.decode(innerBytes as Uint8Array)
  } catch (err) {
    fail(`inner ${field} is not valid dag-cbor: ${(err as Error).message}`, err)
  }
  const value = spec.validate(inner)
  // One object, one byte string: reject re-encodings so the signed bytes are the only form.
  if (!equals(spec.encode(value), innerBytes as Uint8Array)) fail(`inner ${field} is not canonical`)
  return { value, innerBytes: innerBytes as Uint8Array, signature: signature as Uint8Array }
}

/** Signs `innerBytes` (after `context`) and wraps them as `{ format, alg, <field>, signature }` dag-cbor. */
export async function signEnvelope (field: string, format: number, context: Uint8Array, innerBytes: Uint8Array, privateKey: CryptoKey): Promise<Uint8Array> {
  const signature = new Uint8Array(await crypto.subtle.sign(SIGNATURE_ALGORITHM, privateKey, signedMessage(context, innerBytes)))
  return dagCbor.encode({ format, alg: SIGNATURE_ALGORITHM, [field]: innerBytes, signature })
}

/** One kind of signed envelope: how to decode it, and the tag signed before its inner bytes. */
export interface SignedEnvelopeKind<T> extends SignedEnvelopeSpec<T> {
  /** Domain separation (UTF-8, ending in a newline): differs per kind, so one kind never verifies as another. */
  context: string
  /** The InvalidSignatureError message when the signature does not verify. */
  badSignature: string
}

/** Signing, decoding and verifying of one kind of signed envelope. */
export interface SignedEnvelope<T> {
  /** Signs the canonical inner bytes of `value`; returns the envelope bytes. */
  sign: (value: T, privateKey: CryptoKey) => Promise<Uint8Array>
  /** decodeSignedEnvelope with this kind's spec (the signature is not checked). */
  decode: (bytes: unknown) => { value: T, innerBytes: Uint8Array, signature: Uint8Array }
  /** Decodes and checks the signature against `publicKey`; throws through `fail`, or InvalidSignatureError. */
  open: (bytes: unknown, publicKey: CryptoKey) => Promise<T>
}

/** The one sign / decode / verify sequence shared by capabilities and version pointers. */
export function createSignedEnvelope<T> (kind: SignedEnvelopeKind<T>): SignedEnvelope<T> {
  const context = new TextEncoder().encode(kind.context)
  const decode = (bytes: unknown): { value: T, innerBytes: Uint8Array, signature: Uint8Array } => decodeSignedEnvelope(bytes, kind)
  return {
    async sign (value, privateKey) {
      return await signEnvelope(kind.field, kind.format, context, kind.encode(value), privateKey)
    },
    decode,
    async open (bytes, publicKey) {
      const { value, innerBytes, signature } = decode(bytes)
      const ok = await crypto.subtle.verify(SIGNATURE_ALGORITHM, publicKey, signature as Uint8Array<ArrayBuffer>, signedMessage(context, innerBytes))
      if (!ok) throw new InvalidSignatureError(kind.badSignature)
      return value
    }
  }
}
