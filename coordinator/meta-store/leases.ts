/**
 * Leases for background work one coordinator does for all (building a
 * version's delta pack): a record `{ holder, expires }` in the `leases`
 * space, taken and renewed under the store's lock, so on PostgreSQL exactly
 * one coordinator holds it at a time. The holder renews it while it works;
 * when it dies the lease expires (LEASE_TTL_MS after the last renewal) and
 * another coordinator takes the work over. Expiry compares the coordinators'
 * clocks: their skew must stay well below the TTL (NTP keeps it to
 * milliseconds; docs/OPERATIONS.md "Running several coordinators").
 */
import { randomBytes } from 'node:crypto'
import { LEASE_RENEW_MS, LEASE_TTL_MS } from './constants.ts'
import type { MetaDb } from './interface.ts'

/** A lease's stored record. */
export interface LeaseRecord {
  holder: string
  /** ms since the epoch. */
  expires: number
}

/** What runExclusive did. */
export type LeaseOutcome<T> = { ran: true, value: T } | { ran: false }

/** Options of runExclusive. */
export interface ExclusiveOptions {
  /** Whether the work exists already (done by this or another holder). */
  done: () => Promise<boolean>
  pollMs?: number
  signal?: AbortSignal
}

/** Takes, renews and releases named leases for one holder (one coordinator process). */
export interface Leases {
  /** This process's holder id (random per process). */
  readonly holder: string
  /** Takes the lease when it is free, expired or already ours; false when another holder's lease is live. */
  tryAcquire: (name: string) => Promise<boolean>
  /** Extends our lease; false when it is no longer ours (it expired and another holder took it). */
  renew: (name: string) => Promise<boolean>
  /** Drops our lease (a no-op when another holder has it). */
  release: (name: string) => Promise<void>
  /**
   * Runs `fn` once among all holders: returns `{ ran: false }` as soon as `done()`
   * says the work exists; else takes the lease (renewed while `fn` runs) and runs
   * `fn`, or waits while another holder's lease is live, checking every `pollMs`.
   * `fn`'s signal aborts with `options.signal` or when the lease is lost. On a store
   * that is not shared (level: one process) `fn` runs at once, without `done()`.
   */
  runExclusive: <T>(name: string, fn: (signal: AbortSignal) => Promise<T>, options: ExclusiveOptions) => Promise<LeaseOutcome<T>>
}

/** Options of createLeases. */
export interface LeasesInit {
  ttlMs?: number
  renewMs?: number
  now?: () => number
  holder?: string
}

/** The decision of tryAcquire, pure: whether `holder` may take a lease whose record is `cur` at time `now`. */
export function mayTake (cur: LeaseRecord | undefined, holder: string, now: number): boolean {
  return cur == null || cur.holder === holder || cur.expires <= now
}

/** Leases in `db`'s `leases` space. */
export function createLeases (components: { db: MetaDb }, init: LeasesInit = {}): Leases {
  const { db } = components
  const space = db.sublevel<string, LeaseRecord>('leases', { valueEncoding: 'json' })
  const ttlMs = init.ttlMs ?? LEASE_TTL_MS
  const renewMs = init.renewMs ?? LEASE_RENEW_MS
  const now = init.now ?? Date.now
  const holder = init.holder ?? randomBytes(8).toString('hex')
  const locked = async <T>(name: string, fn: () => Promise<T>): Promise<T> => await db.lock(`lease:${name}`, fn)

  const leases: Leases = {
    holder,
    async tryAcquire (name) {
      return await locked(name, async () => {
        if (!mayTake(await space.get(name), holder, now())) return false
        await space.put(name, { holder, expires: now() + ttlMs })
        return true
      })
    },
    async renew (name) {
      return await locked(name, async () => {
        const cur = await space.get(name)
        if (cur?.holder !== holder) return false
        await space.put(name, { holder, expires: now() + ttlMs })
        return true
      })
    },
    async release (name) {
      await locked(name, async () => {
        if ((await space.get(name))?.holder === holder) await space.del(name)
      })
    },
    async runExclusive (name, fn, options) {
      if (!db.shared) return { ran: true, value: await fn(options.signal ?? new AbortController().signal) }
      const pollMs = options.pollMs ?? Math.max(100, Math.floor(renewMs / 4))
      for (;;) {
        options.signal?.throwIfAborted()
        if (await options.done()) return { ran: false }
        if (await leases.tryAcquire(name)) break
        await sleep(pollMs, options.signal)
      }
      // the work may have finished between the check and the lease: check again while holding it
      if (await options.done()) { await leases.release(name); return { ran: false } }
      const lost = new AbortController()
      const onAbort = (): void => { lost.abort(options.signal?.reason) }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      const timer = setInterval(() => {
        leases.renew(name).then(ok => { if (!ok) lost.abort(new Error(`lease ${name} was taken over by another coordinator`)) }, () => {})
      }, renewMs)
      try {
        return { ran: true, value: await fn(lost.signal) }
      } finally {
        clearInterval(timer)
        options.signal?.removeEventListener('abort', onAbort)
        await leases.release(name).catch(() => {})
      }
    }
  }
  return leases
}

async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(t); reject(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
