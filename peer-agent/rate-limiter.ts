/**
 * A token bucket on bytes: `take(n)` resolves once `n` bytes fit the rate.
 * Used on origin response bodies, so a slow reader backpressures TCP and the
 * WAN link sees at most the configured rate (plus one socket buffer).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { RATE_BURST_SECONDS } from './constants.ts'

/** A byte-rate limiter. */
export interface RateLimiter {
  /** Bytes per second, 0 = unlimited. */
  readonly rate: number
  take: (bytes: number, options?: { signal?: AbortSignal }) => Promise<void>
}

/** A token bucket whose rate may change between takes. */
export interface TokenBucket {
  /** Takes `bytes` (going into debt if need be; 0 = only refill) and returns how long to wait the debt off at the current rate (ms, 0 = none). */
  reserve: (bytes: number) => number
}

/** A token bucket of `rateOf()` bytes per second (0 = no limit), `burstSeconds` of the rate deep. */
export function createTokenBucket (rateOf: () => number, burstSeconds = RATE_BURST_SECONDS): TokenBucket {
  let tokens: number | undefined
  let last = performance.now()
  return {
    reserve (bytes) {
      const rate = rateOf()
      if (rate <= 0) return 0
      const capacity = Math.max(rate * burstSeconds, 16 * 1024)
      const now = performance.now()
      tokens = Math.min(capacity, (tokens ?? capacity) + (now - last) / 1000 * rate)
      last = now
      tokens -= bytes
      // go into debt and wait it off: one wait per read keeps this cheap for big reads
      return tokens >= 0 ? 0 : Math.ceil(-tokens / rate * 1000)
    }
  }
}

/** A token bucket of `rate` bytes per second (0 = no limit). */
export function createRateLimiter (rate: number, burstSeconds = RATE_BURST_SECONDS): RateLimiter {
  const bucket = createTokenBucket(() => rate, burstSeconds)
  return {
    rate,
    async take (bytes, options = {}) {
      const ms = bucket.reserve(bytes)
      if (ms > 0) await sleep(ms, undefined, { signal: options.signal })
    }
  }
}

/** The stricter of two caps in bytes per second (0 = no cap). */
export function stricterRate (a: number, b: number): number {
  if (a <= 0) return b
  if (b <= 0) return a
  return Math.min(a, b)
}
