/**
 * Keeps in-memory mirrors of shared state (machine tokens, policies, session
 * revocations, report aggregates, version records) at most SHARED_REFRESH_MS
 * old when several coordinators share the metadata store: one loop reloads
 * them in turn. A reload that fails (the database unreachable) is logged and
 * retried on the next tick; the mirror keeps what it last read.
 */
import { SHARED_REFRESH_MS } from './constants.ts'
import type { Logger } from '../interface.ts'

/** One mirror to reload. */
export interface RefreshTarget {
  name: string
  refresh: () => Promise<void> | void
}

/** A running refresh loop. */
export interface SharedRefresh {
  /** Stops the loop and waits for a reload in progress. */
  stop: () => Promise<void>
}

/** Starts reloading `targets` every `intervalMs` (SHARED_REFRESH_MS), one tick at a time. */
export function startSharedRefresh (components: { logger: Logger }, targets: RefreshTarget[], init: { intervalMs?: number } = {}): SharedRefresh {
  const intervalMs = init.intervalMs ?? SHARED_REFRESH_MS
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> = Promise.resolve()
  const tick = async (): Promise<void> => {
    for (const t of targets) {
      if (stopped) return
      try {
        await t.refresh()
      } catch (err) {
        components.logger.warn('reloading shared state failed; keeping what was read before', { what: t.name, error: (err as Error).message })
      }
    }
  }
  const schedule = (): void => {
    if (stopped) return
    timer = setTimeout(() => { running = tick().finally(schedule) }, intervalMs)
    timer.unref()
  }
  schedule()
  return {
    async stop () {
      stopped = true
      clearTimeout(timer)
      await running
    }
  }
}
