/**
 * A concurrency-limited worker pool: run an async function over many items
 * with at most `limit` in flight (chunk uploads, chunk checks, file hashing,
 * directory sweeps).
 */
import type { AbortOptions } from './interface.ts'

/**
 * Runs `fn` over `items` with at most `limit` calls in flight, in item order.
 * The first failure (or an abort) stops further items from starting; the pool
 * waits for the calls in flight to settle and then throws that first error, so
 * nothing is still running when it returns (a caller may close the file the
 * workers read). `worker` is the slot running the call (0 to limit - 1): a
 * caller may keep one scratch buffer per slot. `items` may be any iterable
 * (a generator is read lazily, one item per free slot).
 */
export async function forEachLimit<T> (
  items: Iterable<T>,
  limit: number,
  fn: (item: T, index: number, worker: number) => Promise<void>,
  options: AbortOptions = {}
): Promise<void> {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`worker pool limit must be a whole number of at least 1, got ${limit}`)
  const signal = options.signal
  signal?.throwIfAborted()
  const it = items[Symbol.iterator]()
  let index = 0
  let failure: { err: unknown } | undefined
  const onAbort = (): void => { failure ??= { err: signal?.reason } }
  signal?.addEventListener('abort', onAbort, { once: true })
  const worker = async (slot: number): Promise<void> => {
    while (failure == null) {
      let next: IteratorResult<T>
      try {
        next = it.next()
      } catch (err) {
        failure ??= { err }
        return
      }
      if (next.done === true) return
      try {
        await fn(next.value, index++, slot)
      } catch (err) {
        failure ??= { err }
      }
    }
  }
  try {
    const size = Array.isArray(items) ? Math.min(limit, items.length) : limit
    await Promise.all(Array.from({ length: size }, async (_, slot) => { await worker(slot) }))
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
  if (failure != null) throw failure.err
}
