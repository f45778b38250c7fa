/**
 * The signed-manifest envelope: dag-cbor `{ format, alg, manifest, signature }`
 * where `signature` is Ed25519 over MANIFEST_SIGNATURE_CONTEXT || manifest bytes,
 * by the coordinator's key. Uses WebCrypto (a web standard, no Node APIs).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { ENVELOPE_FORMAT, MANIFEST_SIGNATURE_CONTEXT, MAX_MANIFEST_BYTES, SIGNATURE_ALGORITHM } from './constants.ts'
import { InvalidManifestError, InvalidSignatureError } from './errors.ts'
import { decodeManifest, type Manifest } from './manifest.ts'
import { signedMessage } from './signing.ts'

/** A verified manifest and the exact bytes that were signed. */
export interface OpenedManifest {
  manifest: Manifest
  manifestBytes: Uint8Array
}

interface Envelope {
  format: number
  alg: string
  manifest: Uint8Array
  signature: Uint8Array
}

const context = new TextEncoder().encode(MANIFEST_SIGNATURE_CONTEXT)

/** Imports a raw 32-byte Ed25519 public key for verification. */
export async function importPublicKey (raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== 32) throw new InvalidSignatureError(`an Ed25519 public key has 32 bytes, got ${raw.length}`)
  return await crypto.subtle.importKey('raw', raw as Uint8Array<ArrayBuffer>, { name: SIGNATURE_ALGORITHM }, true, ['verify'])
}

/** Signs manifest bytes (as produced by encodeManifest) and returns the envelope bytes. */
export async function signManifest (manifestBytes: Uint8Array, privateKey: CryptoKey): Promise<Uint8Array> {
  decodeManifest(manifestBytes) // never sign something that does not decode
  const signature = new Uint8Array(await crypto.subtle.sign(SIGNATURE_ALGORITHM, privateKey, signedMessage(context, manifestBytes) as Uint8Array<ArrayBuffer>))
  const envelope: Envelope = { format: ENVELOPE_FORMAT, alg: SIGNATURE_ALGORITHM, manifest: manifestBytes, signature }
  return dagCbor.encode(envelope)
}

/** Decodes an envelope without verifying it (for inspection); throws InvalidManifestError, or InvalidSignatureError for an unknown algorithm. */
export function decodeEnvelope (bytes: Uint8Array): Envelope {
  if (bytes.length > MAX_MANIFEST_BYTES + 1024) throw new InvalidManifestError(`signed manifest is ${bytes.length} bytes, over the limit`)
  let raw: unknown
  try {
    raw = dagCbor.decode(bytes)
  } catch (err) {
    throw new InvalidManifestError(`signed manifest is not valid dag-cbor (truncated or corrupt): ${(err as Error).message}`, { cause: err })
  }
  const e = raw as Envelope
  if (e == null || typeof e !== 'object' || Object.keys(e).sort().join() !== 'alg,format,manifest,signature') {
    throw new InvalidManifestError('signed manifest must be a map of exactly {format, alg, manifest, signature}')
  }
  if (e.format !== ENVELOPE_FORMAT) throw new InvalidManifestError(`unsupported envelope format ${String(e.format)}`)
  if (typeof e.alg !== 'string') throw new InvalidManifestError('signed manifest field alg must be a string')
  if (e.alg !== SIGNATURE_ALGORITHM) throw new InvalidSignatureError(`unsupported signature algorithm ${JSON.stringify(e.alg.slice(0, 40))}`)
  if (!(e.manifest instanceof Uint8Array) || !(e.signature instanceof Uint8Array) || e.signature.length !== 64) {
    throw new InvalidManifestError('signed manifest fields have the wrong types')
  }
  return e
}

/** Verifies an envelope against the trusted public key and decodes the manifest inside. */
export async function openSignedManifest (bytes: Uint8Array, publicKey: CryptoKey): Promise<OpenedManifest> {
  const e = decodeEnvelope(bytes)
  const ok = await crypto.subtle.verify(SIGNATURE_ALGORITHM, publicKey,
    e.signature as Uint8Array<ArrayBuffer>,
    signedMessage(context, e.manifest) as Uint8Array<ArrayBuffer>)
  if (!ok) throw new InvalidSignatureError('manifest signature does not verify against the coordinator key (tampered, or signed by another key)')
  return { manifest: decodeManifest(e.manifest), manifestBytes: e.manifest }
}
