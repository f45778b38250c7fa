/**
 * Node readable (or any async iterable of bytes) -> web ReadableStream for a
 * Response body, pull-driven: the next piece is read only when the HTTP
 * writer asks for it, so backpressure reaches the source, and each piece is
 * counted as it is handed over (bytes actually sent, for /metrics).
 * With `stallMs`, a consumer that asks for nothing more for that long (the
 * client stopped reading, the socket is full) ends the stream: the source
 * is released at once, whatever the client does next.
 */
import { StreamStalledError } from './errors.ts'

/** Options of toWebStream. */
export interface ToWebStreamOptions {
  /** Each piece's length as it is handed to the consumer. */
  onBytes?: (n: number) => void
  /** Once: at the end (no argument), on a failure, or when the consumer cancels (client gone). */
  onDone?: (err?: Error) => void
  /** Release the source when the consumer cancels (or the stream stalls). */
  onCancel?: () => void
  /** The stream fails (StreamStalledError) when the consumer asks for no piece for this long. */
  stallMs?: number
  /** Called when a stall ended the stream, to drop the connection (which cancels the stream); without it the stream fails. */
  onStall?: () => void
}

/** A pull-based web stream over `source`. */
export function toWebStream (source: AsyncIterable<Uint8Array>, options: ToWebStreamOptions = {}): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]()
  let finished = false
  let watchdog: NodeJS.Timeout | undefined
  const done = (err?: Error): void => {
    if (finished) return
    finished = true
    clearInterval(watchdog)
    options.onDone?.(err)
  }
  // the consumer asks for the next piece only once it has written the last one: no ask, no write progress
  let pulling = false
  let idleSince = performance.now()
  const watch = (controller: ReadableStreamDefaultController<Uint8Array>, stallMs: number): void => {
    watchdog = setInterval(() => {
      if (finished || pulling || performance.now() - idleSince < stallMs) return
      const err = new StreamStalledError(`the client took no byte for ${stallMs / 1000} s`)
      done(err)
      options.onCancel?.()
      void it.return?.()?.catch(() => {})
      // the caller drops the connection, which cancels this stream quietly; else fail it
      if (options.onStall != null) options.onStall()
      else controller.error(err)
    }, Math.max(50, stallMs / 4))
    watchdog.unref()
  }
  return new ReadableStream<Uint8Array>({
    start (controller) {
      if (options.stallMs != null) watch(controller, options.stallMs)
    },
    async pull (controller) {
      pulling = true
      try {
        const next = await it.next()
        if (next.done === true) {
          done()
          controller.close()
          return
        }
        const piece = next.value
        options.onBytes?.(piece.length)
        controller.enqueue(new Uint8Array(piece.buffer, piece.byteOffset, piece.length))
      } catch (err) {
        done(err as Error)
        controller.error(err)
      } finally {
        pulling = false
        idleSince = performance.now()
      }
    },
    async cancel (reason) {
      done(new Error(`stream cancelled by the consumer: ${String(reason)}`))
      options.onCancel?.()
      await it.return?.()
    }
  }, { highWaterMark: 0 })
}
