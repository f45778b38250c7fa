/**
 * A sliding-window counter of attempts per key (login attempts per client IP, failures
 * per user): remembers the times of the last `max` hits of each key, so a key
 * is limited when its oldest remembered hit is still inside the window.
 */

/**
 * The per-user login limit's key for a login name: as a directory compares
 * names (RFC 4518 string preparation, LDAP's caseIgnoreMatch for uid, cn and
 * sAMAccountName): Unicode NFKC, case folded, leading and trailing spaces
 * dropped, inner runs of spaces as one. "bob ", " bob" and "BOB" are one key.
 */
export function loginNameKey (name: string): string {
  return name.normalize('NFKC').toLowerCase().trim().replace(/\s+/g, ' ')
}

/**
 * Counts attempts per key over a sliding window (logins per client IP, failures
 * per user). Not a byte-rate limiter: that is the agent's token bucket
 * (peer-agent/rate-limiter.ts).
 */
export interface AttemptLimiter {
  /** Seconds until `key` may try again, or 0 when it is under the limit. */
  retryAfter: (key: string) => number
  hit: (key: string) => void
  reset: (key: string) => void
}

/** Options of createAttemptLimiter. */
export interface AttemptLimiterInit {
  windowMs: number
  max: number
  now?: () => number
  /** Keys remembered at most (oldest dropped first) so a flood of names cannot grow memory without bound. */
  maxKeys?: number
}

/** An AttemptLimiter kept in memory. */
export function createAttemptLimiter (init: AttemptLimiterInit): AttemptLimiter {
  const now = init.now ?? Date.now
  const maxKeys = init.maxKeys ?? 100_000
  const hits = new Map<string, number[]>()
  const live = (key: string): number[] => {
    const t = now()
    const list = (hits.get(key) ?? []).filter(x => x > t - init.windowMs)
    if (list.length === 0) hits.delete(key)
    else hits.set(key, list)
    return list
  }
  return {
    retryAfter (key) {
      const list = live(key)
      if (list.length < init.max) return 0
      return Math.max(1, Math.ceil((list[list.length - init.max] + init.windowMs - now()) / 1000))
    },
    hit (key) {
      const list = live(key)
      list.push(now())
      if (list.length > init.max) list.splice(0, list.length - init.max)
      hits.delete(key) // re-insert: Map order is least recently hit first
      hits.set(key, list)
      if (hits.size > maxKeys) hits.delete(hits.keys().next().value as string)
    },
    reset (key) {
      hits.delete(key)
    }
  }
}

/** A token bucket per key: `take(key, n)` spends n of up to `perMinute`, refilled evenly over a minute. */
export interface KeyedTokenBucket {
  /** Spends `n` and returns 0, or spends nothing and returns the seconds until `n` are available. */
  take: (key: string, n: number) => number
}

/** Options of createKeyedTokenBucket (`maxKeys`: least recently used dropped first; a dropped key starts full again). */
export interface KeyedTokenBucketInit extends Pick<AttemptLimiterInit, 'now' | 'maxKeys'> {
  perMinute: number
}

/**
 * Token buckets kept in memory: one number pair per key whatever the rate, where the sliding window above
 * would keep `max` timestamps per key (20,000 events a minute per token would be 160 KB each).
 */
export function createKeyedTokenBucket (init: KeyedTokenBucketInit): KeyedTokenBucket {
  const now = init.now ?? Date.now
  const maxKeys = init.maxKeys ?? 100_000
  const perMs = init.perMinute / 60_000
  const buckets = new Map<string, { level: number, at: number }>()
  return {
    take (key, n) {
      const t = now()
      const b = buckets.get(key) ?? { level: init.perMinute, at: t }
      b.level = Math.min(init.perMinute, b.level + (t - b.at) * perMs)
      b.at = t
      buckets.delete(key) // re-insert: Map order is least recently used first
      buckets.set(key, b)
      if (buckets.size > maxKeys) buckets.delete(buckets.keys().next().value as string)
      if (b.level >= n) { b.level -= n; return 0 }
      return Math.max(1, Math.ceil((n - b.level) / perMs / 1000))
    }
  }
}

/** @deprecated the old name of AttemptLimiter, kept until coordinator.ts (another branch's file this session) is moved over. */
export type RateLimiter = AttemptLimiter
/** @deprecated the old name of createAttemptLimiter, kept until coordinator.ts (another branch's file this session) is moved over. */
export const createRateLimiter = createAttemptLimiter
