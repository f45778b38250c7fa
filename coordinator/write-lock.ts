/**
 * Runs async functions one after another, in call order: the image service's
 * writes (commits, retirements, pack records) go through one, because publish
 * order (seq, previous) and the duplicate-version check need it, and they are
 * rare next to reads.
 */

/** Runs `fn` once every function passed before it has settled; its result or failure is the caller's alone. */
export type WriteLock = <T>(fn: () => Promise<T>) => Promise<T>

/** Creates a lock with nothing queued. */
export function createWriteLock (): WriteLock {
  let chain: Promise<unknown> = Promise.resolve()
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn)
    chain = run.catch(() => {})
    return await run
  }
}
