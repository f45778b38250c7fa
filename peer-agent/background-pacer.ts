/**
 * Background mode's I/O side: a RateLimiter whose rate the background
 * controller sets from round-trip probes.
 *
 * Receiver-side pacing: the agent reads a response body only as fast as the
 * rate allows, so TCP's receive window throttles the sender and the WAN
 * carries about that rate. The delay is measured with round-trip probes (a
 * GET /healthz, timed, on its own keep-alive connection) rather than one-way
 * timestamps in the coordinator's streams: a paced stream's bytes wait in the
 * sender's socket buffer for the window to open, so their timestamps would
 * measure our own pacing, not the network's queue. Probes run one at a time
 * and only while a paced transfer is moving bytes.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { createBackgroundController, type BackgroundController } from './background-controller.ts'
import { BACKGROUND_PROBE_IDLE_MS, BACKGROUND_RECHECK_MS, BACKGROUND_PROBE_INTERVAL_MS, BACKGROUND_PROBE_TIMEOUT_MS, BACKGROUND_STATUS_INTERVAL_MS } from './constants.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { createTokenBucket, type RateLimiter } from './rate-limiter.ts'

/** One round trip to the other end; resolves when the answer is in. */
export type DelayProbe = (options: AbortOptions) => Promise<void>

/** A rate limiter driven by the background controller. */
export interface BackgroundPacer extends RateLimiter {
  readonly controller: BackgroundController
  /** Stops probing (a paced transfer that moves bytes again starts it anew). */
  stop: () => Promise<void>
}

/** Dependencies of the pacer. */
export interface BackgroundPacerComponents {
  probe: DelayProbe
  /** Gets a line every BACKGROUND_STATUS_INTERVAL_MS while bytes move (rate, delays): what the mode is doing. */
  logger?: AgentLogger
}

/** Options of the pacer. */
export interface BackgroundPacerInit {
  /** Upper cap in bytes per second (--wan-limit and the policy's cap; 0 = none). */
  maxRate?: number
  probeIntervalMs?: number
  probeTimeoutMs?: number
  /** Probing stops after this long without a byte taken (ms). */
  idleMs?: number
  /** Controller options (tests). */
  controller?: BackgroundController
}

/** A probe that times GET /healthz at `url` (the coordinator). */
export function createHealthProbe (url: string | (() => string)): DelayProbe {
  // a getter follows the agent's coordinator client to the coordinator it fails over to
  const baseOf = typeof url === 'string' ? () => url : url
  return async (options) => {
    const res = await fetch(baseOf().replace(/\/+$/, '') + '/healthz', { signal: options.signal })
    await res.arrayBuffer()
    if (!res.ok) throw new Error(`GET /healthz: HTTP ${res.status}`)
  }
}

/** Creates a pacer; probing starts with the first bytes taken. */
export function createBackgroundPacer (components: BackgroundPacerComponents, init: BackgroundPacerInit = {}): BackgroundPacer {
  const controller = init.controller ?? createBackgroundController({ maxRate: init.maxRate })
  const interval = init.probeIntervalMs ?? BACKGROUND_PROBE_INTERVAL_MS
  const timeout = init.probeTimeoutMs ?? BACKGROUND_PROBE_TIMEOUT_MS
  const idleMs = init.idleMs ?? BACKGROUND_PROBE_IDLE_MS
  const bucket = createTokenBucket(() => controller.rate)
  let lastTake = -Infinity
  // whether the transfer was held back by the rate since the last sample (else it is application-limited)
  let limited = false
  let waiting = 0
  let lastStatus = -Infinity
  let loop: Promise<void> | undefined
  let stopper = new AbortController()

  async function probeLoop (signal: AbortSignal): Promise<void> {
    // a transfer waiting on the pacer is not idle: its rate must keep following the delay
    while (!signal.aborted && (waiting > 0 || performance.now() - lastTake < idleMs)) {
      const t0 = performance.now()
      try {
        await components.probe({ signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]) })
        const now = performance.now()
        controller.sample(now, now - t0, { appLimited: !limited && waiting === 0 })
        limited = false
        if (now - lastStatus >= BACKGROUND_STATUS_INTERVAL_MS) {
          lastStatus = now
          const c = controller
          components.logger?.info(`background: ${(c.rate / 1e6).toFixed(2)} MB/s allowed (${c.phase}), queueing delay ${c.queueDelay.toFixed(0)} ms over a base of ${c.baseDelay.toFixed(0)} ms`, { rate: Math.round(c.rate), phase: c.phase, queueDelayMs: Math.round(c.queueDelay), baseDelayMs: Math.round(c.baseDelay) })
        }
      } catch {
        if (signal.aborted) return
        // no answer in time (or an error answer): like a lost packet, a sign to slow down
        controller.lost(performance.now())
      }
      const wait = interval - (performance.now() - t0)
      if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => {})
    }
  }

  function ensureProbing (): void {
    if (loop != null) return
    if (stopper.signal.aborted) stopper = new AbortController()
    loop = probeLoop(stopper.signal).finally(() => { loop = undefined })
  }

  return {
    controller,
    get rate () { return controller.rate },
    async take (bytes, options = {}) {
      lastTake = performance.now()
      ensureProbing()
      let ms = bucket.reserve(bytes)
      if (ms <= 0) return
      limited = true
      waiting++
      try {
        // in slices, so a rate that rises meanwhile shortens the wait (the debt was priced at the old rate)
        while (ms > 0) {
          await sleep(Math.min(ms, BACKGROUND_RECHECK_MS), undefined, { signal: options.signal })
          ms = bucket.reserve(0)
        }
      } finally {
        waiting--
      }
    },
    async stop () {
      stopper.abort()
      await loop
    }
  }
}
