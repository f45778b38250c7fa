/**
 * A background build queue: jobs run one at a time (each a long, CPU-heavy
 * build such as a version's segments), a job already queued is not queued
 * twice, `stop()` aborts the running job and waits for it, and `whenIdle()`
 * resolves when nothing is queued or running (tests, benchmarks).
 */

/** What a build queue runs. */
export interface BuildQueueInit<J> {
  /** Two jobs with the same key are the same job. */
  key: (job: J) => string
  run: (job: J, signal: AbortSignal) => Promise<void>
  /** A job that failed (not one aborted by stop). */
  onError: (job: J, err: Error) => void
}

/** A background build queue (see the module comment). */
export interface BuildQueue<J> {
  /** Starts running queued jobs (after stop(), again). */
  start: () => void
  /** Drops the queue, aborts the running job and waits for it. */
  stop: () => Promise<void>
  enqueue: (job: J) => void
  whenIdle: () => Promise<void>
  /** Jobs waiting or running. */
  pending: () => number
}

/** Creates a stopped build queue; call start(). */
export function createBuildQueue<J> (init: BuildQueueInit<J>): BuildQueue<J> {
  const queue: J[] = []
  let running = false
  let stopped = true
  let abort = new AbortController()
  let current: Promise<void> = Promise.resolve()
  const idleWaiters: Array<() => void> = []

  const notifyIdle = (): void => {
    if (queue.length > 0 || running) return
    for (const w of idleWaiters.splice(0)) w()
  }
  const pump = (): void => {
    if (running || stopped || queue.length === 0) return
    const job = queue.shift()!
    running = true
    const signal = abort.signal
    current = init.run(job, signal)
      .catch((err: Error) => { if (!signal.aborted) init.onError(job, err) })
      .finally(() => {
        running = false
        notifyIdle()
        pump()
      })
  }
  return {
    start () {
      if (!stopped) return
      stopped = false
      abort = new AbortController()
      pump()
    },
    async stop () {
      stopped = true
      queue.length = 0
      abort.abort()
      await current
      notifyIdle()
    },
    enqueue (job) {
      const k = init.key(job)
      if (queue.some(q => init.key(q) === k)) return
      queue.push(job)
      pump()
    },
    async whenIdle () {
      if (queue.length === 0 && !running) return
      await new Promise<void>(resolve => idleWaiters.push(resolve))
    },
    pending: () => queue.length + (running ? 1 : 0)
  }
}
