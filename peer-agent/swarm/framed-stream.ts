/** Block-exchange messages over one libp2p stream: framing, back-pressure, receive time. */
import type { Connection, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { encodeMessage, ErrorCode, type ExchangeMessage } from '../../protocol/block-exchange.ts'
import { createMessageDecoder } from '../../protocol/message-decoder.ts'
import { BLOCKS_PROTOCOL_PARTIAL, BLOCKS_PROTOCOL_ZSTD, BLOCKS_PROTOCOLS } from '../../protocol/constants.ts'
import { HELLO_TIMEOUT_MS } from './constants.ts'
import { PeerRefusedError } from './errors.ts'

/** A libp2p stream speaking block-exchange messages. */
export interface FramedStream {
  readonly stream: Stream
  /** performance.now() of the last received byte (stall detection). */
  readonly lastByteAt: number
  /** Sends one message (all its parts at once, so messages never interleave); waits while the stream needs draining. */
  send: (m: ExchangeMessage) => Promise<void>
  /** Sends several messages as one write (one muxer frame, noise messages filled to their maximum). */
  sendBatch: (ms: ExchangeMessage[]) => Promise<void>
  /** The next message; undefined at the end of the stream. Throws the decoder's typed error on bad input, or a TimeoutError. */
  next: (timeoutMs?: number) => Promise<ExchangeMessage | undefined>
}

/** Wraps a stream; the messages it may carry follow the protocol id it was opened with. */
export function frameStream (stream: Stream): FramedStream {
  // BLOCKs that span noise messages (most do) stay as their pieces (the session hashes them
  // piecewise; only an onChunk consumer makes it join them). Joined frames are fully
  // overwritten: skip zero-filling.
  const partialChunks = stream.protocol === BLOCKS_PROTOCOL_PARTIAL
  const compressedBlocks = partialChunks || stream.protocol === BLOCKS_PROTOCOL_ZSTD
  const decoder = createMessageDecoder({ alloc: (n) => Buffer.allocUnsafe(n), blockParts: true, compressedBlocks, partialChunks })
  const iterator = stream[Symbol.asyncIterator]()
  const queue: ExchangeMessage[] = []
  let lastByteAt = performance.now()
  let reading: Promise<IteratorResult<unknown>> | undefined

  async function fill (): Promise<boolean> {
    reading ??= iterator.next()
    const r = await reading
    reading = undefined
    if (r.done === true) return false
    lastByteAt = performance.now()
    const chunk = r.value as Uint8Array | Iterable<Uint8Array>
    if (chunk instanceof Uint8Array) {
      for (const m of decoder.push(chunk)) queue.push(m)
    } else {
      for (const part of chunk) for (const m of decoder.push(part)) queue.push(m)
    }
    return true
  }

  return {
    stream,
    get lastByteAt () { return lastByteAt },
    async send (m) {
      await this.sendBatch([m])
    },
    async sendBatch (ms) {
      if (ms.length === 0) return
      // One send per batch (one muxer frame, noise messages filled to their maximum); the
      // chunk bytes go as they are: copying them into one buffer measured slower (fresh
      // large buffers cost page faults and GC) than the extra small parts.
      const parts: Uint8Array[] = []
      for (const m of ms) for (const part of encodeMessage(m)) parts.push(part)
      if (!stream.send(parts.length === 1 ? parts[0] : new Uint8ArrayList(...parts))) await stream.onDrain()
    },
    async next (timeoutMs) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const timeout = timeoutMs == null
        ? undefined
        : new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => { reject(new DOMException(`no message within ${timeoutMs} ms`, 'TimeoutError')) }, timeoutMs)
        })
      try {
        while (queue.length === 0) {
          const more = timeout == null ? await fill() : await Promise.race([fill(), timeout])
          if (!more) return undefined
        }
        return queue.shift()
      } finally {
        clearTimeout(timer)
      }
    }
  }
}

/** The HAVE a serving peer answers a HELLO with. */
export type HaveMessage = Extract<ExchangeMessage, { type: 'have' }>

/** A block stream opened (the peer's first HAVE), or why the peer refused one. */
export type OpenedBlockStream = { framed: FramedStream, have: HaveMessage } | { refused: string, notServing: boolean }

/**
 * Opens a block stream on `connection` as the fetching side: HELLO with our capability, then the
 * peer's HAVE, or why it refused. `protocols` are proposed in order; the first the peer speaks is used.
 */
export async function openBlockStream (connection: Connection, capability: Uint8Array, signal: AbortSignal,
  protocols: readonly string[] = BLOCKS_PROTOCOLS): Promise<OpenedBlockStream> {
  const stream = await connection.newStream([...protocols], { signal })
  const framed = frameStream(stream)
  await framed.send({ type: 'hello', capability })
  const first = await framed.next(HELLO_TIMEOUT_MS)
  if (first != null && first.type === 'have') return { framed, have: first }
  const refused = first == null ? 'closed the stream' : first.type === 'error' ? `error ${first.code}: ${first.message}` : `sent ${first.type} before have`
  stream.abort(new PeerRefusedError(refused))
  // NOT_SERVING: a peer of the version that has not started serving it yet (e.g. still getting the manifest)
  return { refused, notServing: first?.type === 'error' && first.code === ErrorCode.NOT_SERVING }
}
