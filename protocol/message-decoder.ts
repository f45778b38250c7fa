/**
 * The block exchange's frames over a byte stream: an incremental decoder that checks each frame's
 * length against its type's limit as soon as the length prefix and the type byte are in, before
 * it buffers the body, then decodes it (block-exchange.ts decodeMessage). Strict: after a bad
 * frame it throws the same typed error forever.
 */
import { BLOCK_SIZE } from './constants.ts'
import {
  decodeMessage, limitOf, MalformedMessageError, MAX_FRAME_BYTES, MessageTooLargeError, MessageType, readBlockIndex,
  UnknownMessageTypeError, VARINT_MAX, type ExchangeMessage, type MessageGrammar
} from './block-exchange.ts'
import { readVarint } from './varint.ts'

/** Incremental frame decoder over a byte stream. */
export interface MessageDecoder {
  /** Adds received bytes; returns the messages completed by them. Throws on bad input, and forever after. */
  push: (bytes: Uint8Array) => ExchangeMessage[]
  /** Bytes held for an incomplete frame. */
  readonly buffered: number
}

/** Options of createMessageDecoder. */
export interface MessageDecoderInit extends MessageGrammar {
  /**
   * Allocates the buffer a frame split across received pieces is joined into
   * (the caller may pass one that skips zero-filling, e.g. Node's
   * Buffer.allocUnsafe, since every byte is overwritten). Default: new Uint8Array.
   */
  alloc?: (length: number) => Uint8Array
  /**
   * Leave a BLOCK whose bytes span several received pieces unjoined: the
   * message carries them as `parts` and joins them only if `bytes` is read
   * (a receiver that hashes and writes the pieces never copies the chunk).
   * Default false: every BLOCK's `bytes` is one array.
   */
  blockParts?: boolean
}

/** A decoder that enforces each type's limit as soon as the length and type byte are in. */
export function createMessageDecoder (init: MessageDecoderInit = {}): MessageDecoder {
  const alloc = init.alloc ?? ((n: number) => new Uint8Array(n))
  let parts: Uint8Array[] = []
  let buffered = 0
  let failed: Error | undefined

  // The first `n` buffered bytes as one array (a view when they are in one part).
  function peek (n: number): Uint8Array {
    if (parts[0].length >= n) return parts[0].subarray(0, n)
    const out = alloc(n)
    let pos = 0
    for (const p of parts) {
      const take = Math.min(p.length, n - pos)
      out.set(p.subarray(0, take), pos)
      pos += take
      if (pos === n) break
    }
    return out
  }

  function consume (n: number): void {
    buffered -= n
    while (n > 0) {
      if (parts[0].length <= n) { n -= parts[0].length; parts.shift() } else { parts[0] = parts[0].subarray(n); n = 0 }
    }
  }

  function next (): ExchangeMessage | undefined {
    if (buffered === 0) return undefined
    const head = peek(Math.min(buffered, VARINT_MAX + 1))
    let len: number, pos: number
    try {
      [len, pos] = readVarint(head, 0)
    } catch (err) {
      if (head.length > VARINT_MAX || /minimal/.test((err as Error).message)) {
        throw new MalformedMessageError(`bad frame length: ${(err as Error).message}`, { cause: err })
      }
      return undefined // length prefix not complete yet (or never: checked once more bytes arrive)
    }
    if (len === 0) throw new MalformedMessageError('empty frame')
    if (len > MAX_FRAME_BYTES) throw new MessageTooLargeError(`frame of ${len} bytes is over the limit of ${MAX_FRAME_BYTES}`)
    if (head.length > pos) {
      const type = head[pos]
      const limit = limitOf(type, init)
      if (limit == null) throw new UnknownMessageTypeError(`unknown message type 0x${type.toString(16).padStart(2, '0')}`)
      if (len > limit) throw new MessageTooLargeError(`message type 0x${type.toString(16)} of ${len} bytes is over its limit of ${limit}`)
    }
    if (buffered < pos + len) return undefined
    consume(pos)
    if (init.blockParts === true && parts[0].length < len && parts[0][0] === MessageType.BLOCK) return blockOfParts(len)
    const body = peek(len)
    consume(len)
    return decodeMessage(body, init)
  }

  // A BLOCK frame of `len` bytes (type byte included) spanning several parts: the same checks
  // as decodeMessage, the chunk bytes left as views of the parts.
  function blockOfParts (len: number): ExchangeMessage {
    const head = peek(Math.min(len, 1 + VARINT_MAX))
    const [index, pos] = readBlockIndex(head, 1, 'BLOCK')
    const length = len - pos
    if (length < 1 || length % BLOCK_SIZE !== 0) throw new MalformedMessageError(`BLOCK of ${length} bytes is not a positive multiple of ${BLOCK_SIZE}`)
    consume(pos)
    const pieces: Uint8Array[] = []
    buffered -= length
    for (let n = length; n > 0;) {
      const p = parts[0]
      if (p.length <= n) { pieces.push(p); n -= p.length; parts.shift() } else { pieces.push(p.subarray(0, n)); parts[0] = p.subarray(n); n = 0 }
    }
    if (pieces.length === 1) return { type: 'block', index, bytes: pieces[0] }
    let joined: Uint8Array | undefined
    return {
      type: 'block',
      index,
      parts: pieces,
      get bytes () {
        if (joined == null) {
          joined = alloc(length)
          let at = 0
          for (const p of pieces) { joined.set(p, at); at += p.length }
        }
        return joined
      }
    }
  }

  return {
    get buffered () { return buffered },
    push (bytes) {
      if (failed != null) throw failed
      if (bytes.length > 0) { parts.push(bytes); buffered += bytes.length }
      const out: ExchangeMessage[] = []
      try {
        for (let m = next(); m != null; m = next()) out.push(m)
      } catch (err) {
        failed = err as Error
        parts = []
        buffered = 0
        throw err
      }
      return out
    }
  }
}
