/**
 * Which peers a session may dial, and when (pure state, no I/O): peers banned for a bad chunk,
 * back-offs after a refusal, a failed dial or a drop, and the strikes of peers dropped for
 * stalling or slowness, whose back-off doubles each time.
 */
import { MAX_SLOW_BACKOFF_DOUBLINGS } from './constants.ts'

/** The dial admission of one session. */
export interface PeerBook {
  /** Banned (for the rest of the session) or backing off until after `now`. */
  isBlocked: (id: string, now: number) => boolean
  isBanned: (id: string) => boolean
  ban: (id: string) => void
  /** Not dialled again before `until` (performance.now() time); banned peers are not dialled at all. */
  backOff: (id: string, until: number) => void
  /** Forgets a back-off (the peer just opened a stream to us for the version). */
  forgive: (id: string) => void
  /**
   * One more drop of `id` for stalling or slowness: returns how many times it happened in the
   * session and the back-off it earns (`baseMs` doubled each time, at most MAX_SLOW_BACKOFF_DOUBLINGS times).
   */
  strike: (id: string, baseMs: number) => { times: number, backoffMs: number }
}

/** An empty peer book. */
export function createPeerBook (): PeerBook {
  const banned = new Set<string>()
  const strikes = new Map<string, number>()
  const backoff = new Map<string, number>()
  return {
    isBlocked: (id, now) => banned.has(id) || (backoff.get(id) ?? 0) > now,
    isBanned: (id) => banned.has(id),
    ban (id) { banned.add(id) },
    backOff (id, until) { if (!banned.has(id)) backoff.set(id, until) },
    forgive (id) { backoff.delete(id) },
    strike (id, baseMs) {
      const times = (strikes.get(id) ?? 0) + 1
      strikes.set(id, times)
      return { times, backoffMs: baseMs * 2 ** Math.min(times - 1, MAX_SLOW_BACKOFF_DOUBLINGS) }
    }
  }
}
