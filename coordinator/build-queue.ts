/**
 * A background job queue that runs one job at a time, in order, each queued
 * once (a job already waiting is not queued again): the delta pack builder's
 * schedule. Jobs wait while the queue is stopped; stop() aborts the running one.
 */

/** One version whose delta pack is to be built. */
export interface BuildJob {
  image: string
  version: string
}

/** What the queue runs. */
export interface BuildQueueComponents {
  /** Runs one job; `signal` aborts when the queue stops. */
  run: (job: BuildJob, signal: AbortSignal) => Promise<void>
  /** A job that failed (not called for one aborted by stop). */
  onError: (job: BuildJob, err: Error) => void
}

/** The queue. */
export interface BuildQueue {
  start: () => void
  /** Drops the waiting jobs, aborts the running one and waits for it to end. */
  stop: () => Promise<void>
  enqueue: (job: BuildJob) => void
  /** Jobs waiting or running. */
  pending: () => number
  /** Resolves when no job is waiting or running. */
  whenIdle: () => Promise<void>
}

/** Creates a stopped queue. */
export function createBuildQueue (components: BuildQueueComponents): BuildQueue {
  const queue: BuildJob[] = []
  let running = false
  let stopped = true
  let current: Promise<void> = Promise.resolve()
  let abort = new AbortController()
  const idleWaiters: Array<() => void> = []

  const notifyIdle = (): void => {
    if (queue.length > 0 || running) return
    for (const w of idleWaiters.splice(0)) w()
  }

  const pump = (): void => {
    if (running || stopped || queue.length === 0) return
    const job = queue.shift()!
    const { signal } = abort
    running = true
    current = components.run(job, signal)
      .catch((err: Error) => { if (!signal.aborted) components.onError(job, err) })
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
      if (queue.some(q => q.image === job.image && q.version === job.version)) return
      queue.push(job)
      pump()
    },
    pending: () => queue.length + (running ? 1 : 0),
    async whenIdle () {
      if (queue.length === 0 && !running) return
      await new Promise<void>(resolve => idleWaiters.push(resolve))
    }
  }
}
