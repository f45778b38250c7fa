/** One holder per name at a time within this process; waiters run in arrival order. */

/** Runs functions one at a time per name. */
export interface KeyedMutex {
  run: <T>(name: string, fn: () => Promise<T>) => Promise<T>
}

/** Runs at most `max` functions at once; the others wait in arrival order. */
export interface Semaphore {
  run: <T>(fn: () => Promise<T>) => Promise<T>
}

/** Creates a semaphore of `max` slots. */
export function createSemaphore (max: number): Semaphore {
  let free = max
  const waiting: Array<() => void> = []
  return {
    async run (fn) {
      if (free > 0) free--
      else await new Promise<void>(resolve => waiting.push(resolve))
      try {
        return await fn()
      } finally {
        // hand the slot to the next waiter, or give it back
        const next = waiting.shift()
        if (next != null) next()
        else free++
      }
    }
  }
}

/** Creates a mutex whose idle names cost nothing (a name's chain is dropped when its last holder is done). */
export function createKeyedMutex (): KeyedMutex {
  const tails = new Map<string, Promise<unknown>>()
  return {
    async run (name, fn) {
      const prev = tails.get(name) ?? Promise.resolve()
      const run = prev.then(fn, fn)
      const tail = run.catch(() => {})
      tails.set(name, tail)
      try {
        return await run
      } finally {
        if (tails.get(name) === tail) tails.delete(name)
      }
    }
  }
}
