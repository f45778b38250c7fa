/**
 * Keeps in-memory mirrors of shared state (machine tokens, policies, session
 * revocations, report aggregates, version records) at most SHARED_REFRESH_MS
 * old when several coordinators share the metadata store: one loop reloads
 * them in turn, each only when the spaces it mirrors were written since its
 * last reload (`whenChanged`: one small query instead of the whole space). A reload that fails (the database unreachable) is logged and
 * retried on the next tick; the mirror keeps what it last read.
 */
import { SHARED_REFRESH_MS } from './constants.ts'
import type { Logger } from '../interface.ts'
import type { MetaDb } from './interface.ts'
import { IMAGE_SUBLEVEL_PREFIX } from '../constants.ts'

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

/**
 * `load`, called only when one of `spaces` was written since the last call
 * (the store's `generations`); every time on a store without them.
 */
export function whenChanged (db: MetaDb, spaces: string[], load: () => Promise<void> | void): () => Promise<void> {
  let seen: string | undefined
  return async () => {
    // read before loading: a write committed during the load moves it again, so the next tick reloads
    const now = await db.generations?.(spaces)
    if (now != null && now === seen) return
    await load()
    seen = now
  }
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

/** The coordinator's mirrors of shared state, each with the spaces it reads. */
export function sharedMirrors (db: MetaDb, c: Record<'tokens' | 'policies' | 'sessions' | 'events' | 'images', Refreshable>): RefreshTarget[] {
  return [
    { name: 'machine tokens', refresh: whenChanged(db, ['tokens'], c.tokens.refresh) },
    { name: 'policies', refresh: whenChanged(db, ['policies'], c.policies.refresh) },
    { name: 'session revocations', refresh: whenChanged(db, ['revoked-sessions', 'revoked-sessions-meta'], c.sessions.refresh) },
    { name: 'reports', refresh: whenChanged(db, ['reports'], c.events.refresh) },
    { name: 'version records', refresh: whenChanged(db, [`${IMAGE_SUBLEVEL_PREFIX}-versions`], c.images.refresh) }
  ]
}

/** With a shared store, starts reloading the coordinator's mirrors (sharedMirrors); returns what stops it (a no-op on level). */
export function startMirrorRefresh (db: MetaDb, c: Parameters<typeof sharedMirrors>[1] & { logger: Logger }): () => Promise<void> {
  if (!db.shared) return async () => {}
  const refresh = startSharedRefresh({ logger: c.logger }, sharedMirrors(db, c))
  return refresh.stop
}

/** Something with an in-memory mirror to reload. */
interface Refreshable { refresh: () => Promise<void> | void }
