/**
 * Node readable (or any async iterable of bytes) -> web ReadableStream for a
 * Response body, pull-driven: the next piece is read only when the HTTP
 * writer asks for it, so backpressure reaches the source, and each piece is
 * counted as it is handed over (bytes actually sent, for /metrics).
 */

/** Options of toWebStream. */
export interface ToWebStreamOptions {
  /** Each piece's length as it is handed to the consumer. */
  onBytes?: (n: number) => void
  /** Once: at the end (no argument), on a failure, or when the consumer cancels (client gone). */
  onDone?: (err?: Error) => void
  /** Release the source when the consumer cancels. */
  onCancel?: () => void
}

/** A pull-based web stream over `source`. */
export function toWebStream (source: AsyncIterable<Uint8Array>, options: ToWebStreamOptions = {}): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]()
  let finished = false
  const done = (err?: Error): void => {
    if (finished) return
    finished = true
    options.onDone?.(err)
  }
  return new ReadableStream<Uint8Array>({
    async pull (controller) {
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
      }
    },
    async cancel (reason) {
      done(new Error(`stream cancelled by the consumer: ${String(reason)}`))
      options.onCancel?.()
      await it.return?.()
    }
  }, { highWaterMark: 0 })
}
