/**
 * Block exchange messages between peers on BLOCKS_PROTOCOL. Every message is
 * one frame: varint(length) || type byte || body, where length counts the type
 * byte and the body. Each type has a hard size limit, checked as soon as the
 * length and type are known (before buffering the body). Decoding is strict:
 * unknown types, oversized or malformed frames throw a typed error and the
 * decoder stays failed. Byte layout: docs/PROTOCOL.md "Block exchange". The decoder over a
 * byte stream is message-decoder.ts.
 */
import { BLOCK_SIZE, MAX_CHUNK_BLOCKS } from './constants.ts'
import { TooLargeError, ValidationError } from './errors.ts'
import { MAX_CAPABILITY_BYTES } from './capability.ts'
import { bitmapHas } from './claim-rule.ts'
import { pushVarint, readVarint } from './varint.ts'

/** Message type bytes. */
export const MessageType = {
  HELLO: 0x01,
  HAVE: 0x02,
  HAVE_UPDATE: 0x03,
  WANT: 0x04,
  CANCEL: 0x05,
  DONT_HAVE: 0x06,
  BLOCK: 0x07,
  ERROR: 0x08,
  /** Only on BLOCKS_PROTOCOL_ZSTD and later: a chunk as one zstd frame (docs/PROTOCOL.md "Compressed chunks"). */
  BLOCK_ZSTD: 0x09,
  /** Only on BLOCKS_PROTOCOL_PARTIAL: some blocks of one chunk are wanted (docs/PROTOCOL.md "Partial chunks"). */
  WANT_BLOCKS: 0x0a,
  /** Only on BLOCKS_PROTOCOL_PARTIAL: the blocks a WANT_BLOCKS asked for, raw or as one zstd frame. */
  BLOCK_PART: 0x0b
} as const

/** ERROR codes. */
export const ErrorCode = {
  /** The capability is missing, forged, expired or for another peer. */
  UNAUTHORIZED: 1,
  /** The peer does not serve that image version. */
  NOT_SERVING: 2,
  /** A message broke the protocol (malformed, oversized, out of order). */
  PROTOCOL: 3,
  /** The peer is at its limit of concurrent peers. */
  BUSY: 4,
  /** The serving side failed (e.g. could not read its own chunk). */
  INTERNAL: 5
} as const

/** Most chunks of one image version the swarm handles (2^23: a HAVE bitmap of 1 MiB). */
export const MAX_SWARM_CHUNKS = 1 << 23

/** Most indices in one WANT, CANCEL, DONT_HAVE or HAVE_UPDATE. */
export const MAX_INDICES_PER_MESSAGE = 4096

/** Longest ERROR text in bytes (UTF-8). */
export const MAX_ERROR_TEXT_BYTES = 512

/** Largest chunk in bytes a BLOCK may carry. */
export const MAX_BLOCK_BYTES = MAX_CHUNK_BLOCKS * BLOCK_SIZE

/** Longest block mask of a WANT_BLOCKS: one bit per block of the largest chunk. */
export const MAX_BLOCK_MASK_BYTES = MAX_CHUNK_BLOCKS / 8

/** BLOCK_PART flag bit: the blocks are one zstd frame (else they are as they are). */
export const PART_FLAG_ZSTD = 0x01

/** HAVE flag bit: the sender is syncing this version now (it fetches its claimed share from the origin). */
export const HAVE_FLAG_ACTIVE = 0x01

/** Longest varint in a frame: indices, counts and frame lengths stay below 2^35. */
export const VARINT_MAX = 5

/** Largest frame (type byte + body) per type; the length prefix is checked against it. */
export const MAX_MESSAGE_BYTES: Record<number, number> = {
  [MessageType.HELLO]: 1 + MAX_CAPABILITY_BYTES,
  [MessageType.HAVE]: 1 + 1 + VARINT_MAX + MAX_SWARM_CHUNKS / 8,
  [MessageType.HAVE_UPDATE]: 1 + MAX_INDICES_PER_MESSAGE * VARINT_MAX,
  [MessageType.WANT]: 1 + MAX_INDICES_PER_MESSAGE * VARINT_MAX,
  [MessageType.CANCEL]: 1 + MAX_INDICES_PER_MESSAGE * VARINT_MAX,
  [MessageType.DONT_HAVE]: 1 + MAX_INDICES_PER_MESSAGE * VARINT_MAX,
  [MessageType.BLOCK]: 1 + VARINT_MAX + MAX_BLOCK_BYTES,
  [MessageType.ERROR]: 1 + 1 + MAX_ERROR_TEXT_BYTES,
  // a sender compresses a chunk only when that makes it smaller, so the raw chunk's limit holds
  [MessageType.BLOCK_ZSTD]: 1 + VARINT_MAX + MAX_BLOCK_BYTES,
  [MessageType.WANT_BLOCKS]: 1 + VARINT_MAX + MAX_BLOCK_MASK_BYTES,
  // the blocks asked for are fewer than the chunk's; a frame is sent only when smaller than they are
  [MessageType.BLOCK_PART]: 1 + VARINT_MAX + 1 + MAX_BLOCK_BYTES
}

/** Largest frame of any type. */
export const MAX_FRAME_BYTES = Math.max(...Object.values(MAX_MESSAGE_BYTES))

/** One block-exchange message. */
export type ExchangeMessage =
  | { type: 'hello', capability: Uint8Array }
  | { type: 'have', active: boolean, count: number, bitmap: Uint8Array }
  | { type: 'have-update', indices: number[] }
  | { type: 'want', indices: number[] }
  | { type: 'cancel', indices: number[] }
  | { type: 'dont-have', indices: number[] }
  | {
    type: 'block'
    index: number
    bytes: Uint8Array
    /**
     * From a decoder made with `blockParts`: the chunk bytes as received, in
     * order, when they arrived in more than one piece (views, not copies).
     * Reading `bytes` then joins them into one array on first access.
     */
    parts?: readonly Uint8Array[]
  }
  | { type: 'error', code: number, message: string }
  /**
   * Chunk `index` as one zstd frame (BLOCKS_PROTOCOL_ZSTD only). Decoding it is the
   * receiver's job, bounded by the chunk's length in its manifest: nothing here trusts
   * what the frame says it decodes to.
   */
  | { type: 'block-zstd', index: number, bytes: Uint8Array }
  /**
   * Blocks of chunk `index` (BLOCKS_PROTOCOL_PARTIAL only): bit k of `mask` (least significant
   * first, as in HAVE) asks for the chunk's block k. Bits past the chunk's blocks are the
   * server's to refuse: only it knows the chunk's length here.
   */
  | { type: 'want-blocks', index: number, mask: Uint8Array }
  /**
   * The blocks a WANT_BLOCKS asked for, in order: as they are (`compressed` false: a multiple of
   * BLOCK_SIZE) or one zstd frame of them. What they must be is the receiver's to check.
   */
  | { type: 'block-part', index: number, compressed: boolean, bytes: Uint8Array }

/** A frame or message that breaks the protocol's grammar. */
export class MalformedMessageError extends ValidationError {
  static override name = 'MalformedMessageError'
  override name = 'MalformedMessageError'
}

/** A frame whose type byte is not one of MessageType. */
export class UnknownMessageTypeError extends MalformedMessageError {
  static override name = 'UnknownMessageTypeError'
  override name = 'UnknownMessageTypeError'
}

/** A frame longer than its type's limit. */
export class MessageTooLargeError extends TooLargeError {
  static override name = 'MessageTooLargeError'
  override name = 'MessageTooLargeError'
}

const LIST_TYPES: Record<string, number> = { 'have-update': MessageType.HAVE_UPDATE, want: MessageType.WANT,
  cancel: MessageType.CANCEL, 'dont-have': MessageType.DONT_HAVE }
const LIST_NAMES: Record<number, 'have-update' | 'want' | 'cancel' | 'dont-have'> = {
  [MessageType.HAVE_UPDATE]: 'have-update', [MessageType.WANT]: 'want', [MessageType.CANCEL]: 'cancel', [MessageType.DONT_HAVE]: 'dont-have'
}

/** One frame: varint(1 + body length) || type || body (block exchange and manifest exchange alike). */
export function encodeFrame (type: number, body: number[] | Uint8Array): Uint8Array {
  const head: number[] = []
  pushVarint(head, body.length + 1)
  head.push(type)
  const out = new Uint8Array(head.length + body.length)
  out.set(head)
  out.set(body, head.length)
  return out
}

function checkIndex (i: number): void {
  if (!Number.isSafeInteger(i) || i < 0 || i >= MAX_SWARM_CHUNKS) throw new MalformedMessageError(`chunk index ${i} out of range`)
}

/** A WANT_BLOCKS mask: 1 to MAX_BLOCK_MASK_BYTES bytes, at least one block asked for. */
function checkMask (mask: Uint8Array): void {
  if (mask.length < 1 || mask.length > MAX_BLOCK_MASK_BYTES) {
    throw new MalformedMessageError(`block mask of ${mask.length} bytes (1 to ${MAX_BLOCK_MASK_BYTES})`)
  }
  if (mask.every(b => b === 0)) throw new MalformedMessageError('block mask asks for no block')
}

/** Whether `mask` asks only for blocks of a chunk of `blocks` blocks (no bit at or past `blocks`). */
export function maskFits (mask: Uint8Array, blocks: number): boolean {
  if (mask.length > Math.ceil(blocks / 8)) return false
  return blocks % 8 === 0 || mask.length < Math.ceil(blocks / 8) || (mask[mask.length - 1] >> (blocks % 8)) === 0
}

/** The blocks of `chunk` that `mask` asks for, in order, in one array (what a BLOCK_PART carries). */
export function pickBlocks (chunk: Uint8Array, mask: Uint8Array): Uint8Array {
  const out = new Uint8Array(maskCount(mask) * BLOCK_SIZE)
  let at = 0
  for (let k = 0; k < mask.length * 8; k++) {
    if (!bitmapHas(mask, k)) continue
    out.set(chunk.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE), at)
    at += BLOCK_SIZE
  }
  return out
}

/** How many blocks `mask` asks for. */
export function maskCount (mask: Uint8Array): number {
  let n = 0
  for (let b of mask) for (; b !== 0; b &= b - 1) n++
  return n
}

/**
 * Encodes a message as one or more byte arrays to send in order (a BLOCK is a
 * small header then the chunk bytes themselves, so chunks are never copied).
 */
export function encodeMessage (m: ExchangeMessage): Uint8Array[] {
  switch (m.type) {
    case 'hello':
      if (m.capability.length > MAX_CAPABILITY_BYTES) throw new MessageTooLargeError('capability over the limit')
      return [encodeFrame(MessageType.HELLO, m.capability)]
    case 'have': {
      if (!Number.isSafeInteger(m.count) || m.count < 0 || m.count > MAX_SWARM_CHUNKS) throw new MalformedMessageError(`have-map of ${m.count} chunks`)
      if (m.bitmap.length !== Math.ceil(m.count / 8)) throw new MalformedMessageError('bitmap length does not match count')
      const head = [m.active ? HAVE_FLAG_ACTIVE : 0]
      pushVarint(head, m.count)
      const body = new Uint8Array(head.length + m.bitmap.length)
      body.set(head)
      body.set(m.bitmap, head.length)
      if (m.count % 8 !== 0 && m.bitmap.length > 0) body[body.length - 1] &= (1 << (m.count % 8)) - 1
      return [encodeFrame(MessageType.HAVE, body)]
    }
    case 'have-update': case 'want': case 'cancel': case 'dont-have': {
      if (m.indices.length < 1 || m.indices.length > MAX_INDICES_PER_MESSAGE) {
        throw new MalformedMessageError(`${m.type} needs 1 to ${MAX_INDICES_PER_MESSAGE} indices`)
      }
      const body: number[] = []
      for (const i of m.indices) { checkIndex(i); pushVarint(body, i) }
      return [encodeFrame(LIST_TYPES[m.type], body)]
    }
    case 'block': case 'block-zstd': {
      checkIndex(m.index)
      if (m.bytes.length < 1 || m.bytes.length > MAX_BLOCK_BYTES) throw new MessageTooLargeError(`${m.type} of ${m.bytes.length} bytes`)
      const inner: number[] = [m.type === 'block' ? MessageType.BLOCK : MessageType.BLOCK_ZSTD]
      pushVarint(inner, m.index)
      const head: number[] = []
      pushVarint(head, inner.length + m.bytes.length)
      return [Uint8Array.from([...head, ...inner]), m.bytes]
    }
    case 'want-blocks': {
      checkIndex(m.index)
      checkMask(m.mask)
      const body: number[] = []
      pushVarint(body, m.index)
      return [encodeFrame(MessageType.WANT_BLOCKS, [...body, ...m.mask])]
    }
    case 'block-part': {
      checkIndex(m.index)
      if (m.bytes.length < 1 || m.bytes.length > MAX_BLOCK_BYTES) throw new MessageTooLargeError(`block-part of ${m.bytes.length} bytes`)
      const inner: number[] = [MessageType.BLOCK_PART]
      pushVarint(inner, m.index)
      inner.push(m.compressed ? PART_FLAG_ZSTD : 0)
      const head: number[] = []
      pushVarint(head, inner.length + m.bytes.length)
      return [Uint8Array.from([...head, ...inner]), m.bytes]
    }
    case 'error': {
      let text = new TextEncoder().encode(m.message)
      if (text.length > MAX_ERROR_TEXT_BYTES) text = new TextEncoder().encode(m.message.slice(0, MAX_ERROR_TEXT_BYTES / 4))
      if (!Number.isInteger(m.code) || m.code < 0 || m.code > 255) throw new MalformedMessageError(`error code ${m.code}`)
      const body = new Uint8Array(1 + text.length)
      body[0] = m.code
      body.set(text, 1)
      return [encodeFrame(MessageType.ERROR, body)]
    }
  }
}

/** encodeMessage as one byte array (tests, small messages). */
export function encodeMessageBytes (m: ExchangeMessage): Uint8Array {
  const parts = encodeMessage(m)
  if (parts.length === 1) return parts[0]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let pos = 0
  for (const p of parts) { out.set(p, pos); pos += p.length }
  return out
}

function readIndexList (body: Uint8Array, pos: number, what: string): number[] {
  const out: number[] = []
  while (pos < body.length) {
    let v: number
    try {
      [v, pos] = readVarint(body, pos)
    } catch (err) {
      throw new MalformedMessageError(`${what}: bad varint: ${(err as Error).message}`, { cause: err })
    }
    checkIndex(v)
    out.push(v)
  }
  if (out.length < 1 || out.length > MAX_INDICES_PER_MESSAGE) {
    throw new MalformedMessageError(`${what} needs 1 to ${MAX_INDICES_PER_MESSAGE} indices, got ${out.length}`)
  }
  return out
}

/** The chunk index at `pos` of a BLOCK or BLOCK_ZSTD, and the position after it. */
export function readBlockIndex (bytes: Uint8Array, pos: number, what: string): [number, number] {
  let index: number, next: number
  try {
    [index, next] = readVarint(bytes, pos)
  } catch (err) {
    throw new MalformedMessageError(`${what}: bad index: ${(err as Error).message}`, { cause: err })
  }
  checkIndex(index)
  return [index, next]
}

/** Which messages a stream's protocol version allows. */
export interface MessageGrammar {
  /** BLOCK_ZSTD is a message (BLOCKS_PROTOCOL_ZSTD); without it, type 0x09 is unknown as on BLOCKS_PROTOCOL. Default false. */
  compressedBlocks?: boolean
  /** WANT_BLOCKS and BLOCK_PART are messages (BLOCKS_PROTOCOL_PARTIAL); without it, types 0x0a and 0x0b are unknown. Default false. */
  partialChunks?: boolean
}

/** The size limit of message `type` under `grammar`; undefined for a type it does not have. */
export function limitOf (type: number, grammar: MessageGrammar): number | undefined {
  if (type === MessageType.BLOCK_ZSTD && grammar.compressedBlocks !== true) return undefined
  if ((type === MessageType.WANT_BLOCKS || type === MessageType.BLOCK_PART) && grammar.partialChunks !== true) return undefined
  return MAX_MESSAGE_BYTES[type]
}

/**
 * Decodes one frame's content (type byte + body, without the length prefix).
 * Throws UnknownMessageTypeError, MessageTooLargeError or MalformedMessageError.
 * BLOCK, BLOCK_ZSTD, BLOCK_PART, WANT_BLOCKS and HELLO bytes are views into `frameBody`.
 */
export function decodeMessage (frameBody: Uint8Array, grammar: MessageGrammar = {}): ExchangeMessage {
  if (frameBody.length < 1) throw new MalformedMessageError('empty frame')
  const type = frameBody[0]
  const limit = limitOf(type, grammar)
  if (limit == null) throw new UnknownMessageTypeError(`unknown message type 0x${type.toString(16).padStart(2, '0')}`)
  if (frameBody.length > limit) throw new MessageTooLargeError(`message type 0x${type.toString(16)} of ${frameBody.length} bytes is over its limit of ${limit}`)
  const body = frameBody.subarray(1)
  switch (type) {
    case MessageType.HELLO:
      if (body.length < 1) throw new MalformedMessageError('HELLO without capability')
      return { type: 'hello', capability: body }
    case MessageType.HAVE: {
      if (body.length < 2) throw new MalformedMessageError('HAVE too short')
      const flags = body[0]
      if ((flags & ~HAVE_FLAG_ACTIVE) !== 0) throw new MalformedMessageError(`HAVE has unknown flags 0x${flags.toString(16)}`)
      let count: number, pos: number
      try {
        [count, pos] = readVarint(body, 1)
      } catch (err) {
        throw new MalformedMessageError(`HAVE: bad count: ${(err as Error).message}`, { cause: err })
      }
      if (count > MAX_SWARM_CHUNKS) throw new MalformedMessageError(`HAVE of ${count} chunks is over the limit`)
      const bitmap = body.subarray(pos)
      if (bitmap.length !== Math.ceil(count / 8)) throw new MalformedMessageError(`HAVE bitmap has ${bitmap.length} bytes for ${count} chunks`)
      if (count % 8 !== 0 && (bitmap[bitmap.length - 1] >> (count % 8)) !== 0) throw new MalformedMessageError('HAVE bitmap has bits set past the chunk count')
      return { type: 'have', active: (flags & HAVE_FLAG_ACTIVE) !== 0, count, bitmap }
    }
    case MessageType.HAVE_UPDATE: case MessageType.WANT: case MessageType.CANCEL: case MessageType.DONT_HAVE: {
      const name = LIST_NAMES[type]
      return { type: name, indices: readIndexList(body, 0, name.toUpperCase()) }
    }
    case MessageType.BLOCK: {
      const [index, pos] = readBlockIndex(body, 0, 'BLOCK')
      const bytes = body.subarray(pos)
      if (bytes.length < 1 || bytes.length % BLOCK_SIZE !== 0) {
        throw new MalformedMessageError(`BLOCK of ${bytes.length} bytes is not a positive multiple of ${BLOCK_SIZE}`)
      }
      return { type: 'block', index, bytes }
    }
    case MessageType.BLOCK_ZSTD: {
      const [index, pos] = readBlockIndex(body, 0, 'BLOCK_ZSTD')
      const bytes = body.subarray(pos)
      if (bytes.length < 1) throw new MalformedMessageError('BLOCK_ZSTD without a zstd frame')
      return { type: 'block-zstd', index, bytes }
    }
    case MessageType.WANT_BLOCKS: {
      const [index, pos] = readBlockIndex(body, 0, 'WANT_BLOCKS')
      const mask = body.subarray(pos)
      checkMask(mask)
      return { type: 'want-blocks', index, mask }
    }
    case MessageType.BLOCK_PART: {
      const [index, pos] = readBlockIndex(body, 0, 'BLOCK_PART')
      if (pos >= body.length) throw new MalformedMessageError('BLOCK_PART without flags')
      const flags = body[pos]
      if ((flags & ~PART_FLAG_ZSTD) !== 0) throw new MalformedMessageError(`BLOCK_PART has unknown flags 0x${flags.toString(16)}`)
      const compressed = flags === PART_FLAG_ZSTD
      const bytes = body.subarray(pos + 1)
      if (bytes.length < 1 || (!compressed && bytes.length % BLOCK_SIZE !== 0)) {
        throw new MalformedMessageError(`BLOCK_PART of ${bytes.length} bytes is not ${compressed ? 'a zstd frame' : `a positive multiple of ${BLOCK_SIZE}`}`)
      }
      return { type: 'block-part', index, compressed, bytes }
    }
    default: { // ERROR
      if (body.length < 1) throw new MalformedMessageError('ERROR without code')
      let message: string
      try {
        message = new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(1))
      } catch (err) {
        throw new MalformedMessageError('ERROR text is not UTF-8', { cause: err })
      }
      return { type: 'error', code: body[0], message }
    }
  }
}

// The have-map bit operations and the claim rule live in claim-rule.ts (pure, shared by server and session).
export { bitmapClear, bitmapHas, bitmapSet, CLAIM_GROUP_CHUNKS, claimOwner, claimScore } from './claim-rule.ts'
