/**
 * Signed manifests between peers on MANIFEST_PROTOCOL, so the agents of a site
 * download a version's manifest from the origin about once (it verifies
 * offline against the pinned coordinator key, so a peer cannot forge it).
 *
 * One stream per question: the asker sends one REQUEST frame holding its
 * capability for image@version (bound to its peer id, as on BLOCKS_PROTOCOL);
 * the peer answers one frame and closes. Frames are varint(length) || status
 * or type byte || body, like block-exchange frames, with a hard limit per
 * kind checked before the body is buffered. Byte layout: docs/PROTOCOL.md
 * "Manifest exchange".
 */
import { MAX_CAPABILITY_BYTES } from './capability.ts'
import { encodeFrame, MalformedMessageError, MessageTooLargeError } from './block-exchange.ts'
import { MAX_MANIFEST_BYTES } from './constants.ts'
import { readVarint } from './varint.ts'

/** Type byte of the one request. */
export const MANIFEST_REQUEST_TYPE = 0x01

/** Status byte of an answer. */
export const ManifestStatus = {
  /** The body is the signed manifest envelope of the capability's image@version. */
  MANIFEST: 0x01,
  /** The peer is downloading that manifest from the origin now: ask again shortly. */
  FETCHING: 0x02,
  /** The peer neither holds nor is downloading it. */
  NOT_HELD: 0x03,
  /** The capability is missing, forged, expired or for another peer, or the request broke the protocol; the body is a short UTF-8 reason. */
  REFUSED: 0x04
} as const

/** Longest reason text of a REFUSED answer, in bytes (UTF-8). */
export const MAX_REFUSAL_TEXT_BYTES = 512

/** Largest signed envelope carried (the manifest limit plus the envelope's signature and header). */
export const MAX_ENVELOPE_BYTES = MAX_MANIFEST_BYTES + 1024

/** Largest request frame body (type byte + capability). */
export const MAX_MANIFEST_REQUEST_BYTES = 1 + MAX_CAPABILITY_BYTES

/** Largest answer frame body (status byte + envelope). */
export const MAX_MANIFEST_ANSWER_BYTES = 1 + MAX_ENVELOPE_BYTES

/** An answer to a manifest request. */
export type ManifestAnswer =
  | { status: 'manifest', envelope: Uint8Array }
  | { status: 'fetching' }
  | { status: 'not-held' }
  | { status: 'refused', reason: string }

/** Encodes the request frame (length prefix included). */
export function encodeManifestRequest (capability: Uint8Array): Uint8Array {
  if (capability.length === 0 || capability.length > MAX_CAPABILITY_BYTES) {
    throw new MessageTooLargeError(`capability of ${capability.length} bytes (1 to ${MAX_CAPABILITY_BYTES})`)
  }
  return encodeFrame(MANIFEST_REQUEST_TYPE, capability)
}

/** Decodes a request frame body (after the length prefix): the capability bytes, still to be verified. */
export function decodeManifestRequest (body: Uint8Array): Uint8Array {
  if (body.length > MAX_MANIFEST_REQUEST_BYTES) throw new MessageTooLargeError(`manifest request of ${body.length} bytes, over ${MAX_MANIFEST_REQUEST_BYTES}`)
  if (body.length < 2) throw new MalformedMessageError('empty manifest request')
  if (body[0] !== MANIFEST_REQUEST_TYPE) throw new MalformedMessageError(`unknown manifest request type ${body[0]}`)
  return body.subarray(1)
}

/** Encodes an answer frame (length prefix included). */
export function encodeManifestAnswer (a: ManifestAnswer): Uint8Array {
  switch (a.status) {
    case 'manifest':
      if (a.envelope.length === 0 || a.envelope.length > MAX_ENVELOPE_BYTES) {
        throw new MessageTooLargeError(`envelope of ${a.envelope.length} bytes (1 to ${MAX_ENVELOPE_BYTES})`)
      }
      return encodeFrame(ManifestStatus.MANIFEST, a.envelope)
    case 'fetching': return encodeFrame(ManifestStatus.FETCHING, new Uint8Array(0))
    case 'not-held': return encodeFrame(ManifestStatus.NOT_HELD, new Uint8Array(0))
    case 'refused': {
      let text = new TextEncoder().encode(a.reason)
      if (text.length > MAX_REFUSAL_TEXT_BYTES) text = text.subarray(0, MAX_REFUSAL_TEXT_BYTES)
      return encodeFrame(ManifestStatus.REFUSED, text)
    }
  }
}

/** Decodes an answer frame body (after the length prefix). The envelope is returned unverified. */
export function decodeManifestAnswer (body: Uint8Array): ManifestAnswer {
  if (body.length > MAX_MANIFEST_ANSWER_BYTES) throw new MessageTooLargeError(`manifest answer of ${body.length} bytes, over ${MAX_MANIFEST_ANSWER_BYTES}`)
  if (body.length === 0) throw new MalformedMessageError('empty manifest answer')
  const rest = body.subarray(1)
  switch (body[0]) {
    case ManifestStatus.MANIFEST:
      if (rest.length === 0) throw new MalformedMessageError('manifest answer without an envelope')
      return { status: 'manifest', envelope: rest }
    case ManifestStatus.FETCHING:
    case ManifestStatus.NOT_HELD:
      if (rest.length !== 0) throw new MalformedMessageError('unexpected body in a manifest answer')
      return { status: body[0] === ManifestStatus.FETCHING ? 'fetching' : 'not-held' }
    case ManifestStatus.REFUSED:
      if (rest.length > MAX_REFUSAL_TEXT_BYTES) throw new MessageTooLargeError(`refusal text of ${rest.length} bytes`)
      try {
        return { status: 'refused', reason: new TextDecoder('utf-8', { fatal: true }).decode(rest) }
      } catch {
        throw new MalformedMessageError('refusal text is not UTF-8')
      }
    default:
      throw new MalformedMessageError(`unknown manifest answer status ${body[0]}`)
  }
}

/**
 * Reads the length prefix at the start of `bytes`: the frame body length and
 * where the body starts, or undefined while the prefix is incomplete. Throws
 * MessageTooLargeError at once when the length exceeds `max`.
 */
export function readFrameLength (bytes: Uint8Array, max: number): { length: number, start: number } | undefined {
  let end = 0
  while (end < bytes.length && end < 8 && (bytes[end] & 0x80) !== 0) end++
  if (end >= bytes.length) {
    if (end >= 8) throw new MalformedMessageError('length prefix too long')
    return undefined
  }
  let value: number, start: number
  try {
    [value, start] = readVarint(bytes, 0)
  } catch (err) {
    throw new MalformedMessageError(`bad length prefix: ${(err as Error).message}`)
  }
  if (value > max) throw new MessageTooLargeError(`frame of ${value} bytes, over ${max}`)
  if (value === 0) throw new MalformedMessageError('empty frame')
  return { length: value, start }
}
