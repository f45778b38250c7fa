/**
 * Background mode's I/O side: a RateLimiter whose rate the background
 * controller sets from round-trip probes.
 *
 * Sender-side pacing (protocol/pace.ts): origin requests name a pace session
 * and the rate (requestHeaders), and each probe round sends a POST /v1/pace
 * with the session's current rate, then times the round trip (a TCP
 * handshake, createConnectProbe): the coordinator writes
 * our streams at that rate, so its bytes leave evenly and the agent reads
 * them at once. Receiver-side pacing, reading a body only as fast as the rate
 * allows so that TCP's receive window throttles the sender, is the fallback
 * for a coordinator without /v1/pace (or before its first answer); it cannot
 * hold an idle link full: whenever the rate passes the link's, the receive
 * buffer empties, the window opens and the sender bursts a whole window into
 * the bottleneck's queue (docs/BENCHMARKS.md "background": 0.36-0.61 of an
 * idle 20 mbit link). Delay is measured by round trips rather than one-way
 * timestamps in the streams, whose bytes wait for their pace before they
 * leave. Probes run one at a time and only while a paced transfer moves bytes.
 */
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { PACE_RATE_HEADER, PACE_ROUTE, PACE_SESSION_HEADER, PaceUpdateResponse, type PaceUpdate } from '../protocol/pace.ts'
import { createBackgroundController, type BackgroundController } from './background-controller.ts'
import {
  BACKGROUND_PROBE_IDLE_MS, BACKGROUND_RECHECK_MS, BACKGROUND_PROBE_INTERVAL_MS, BACKGROUND_PROBE_TIMEOUT_MS,
  BACKGROUND_STATUS_INTERVAL_MS, BACKGROUND_DELIVERY_WINDOW_MS, BACKGROUND_PATH_LIMITED_SHARE
} from './constants.ts'
import type { AbortOptions } from '../utils/interface.ts'
import type { AgentLogger } from './interface.ts'
import { createTokenBucket, type RateLimiter } from './rate-limiter.ts'

/** One round trip to the other end; resolves when the answer is in. */
export type DelayProbe = (options: AbortOptions) => Promise<void>

/**
 * Tells the coordinator a pace session's rate (one round trip, timed as a probe): resolves with the rate it
 * applies, or undefined when it has no sender-side pacing (an older coordinator: 404) or refuses us.
 */
export type PaceUpdater = (update: PaceUpdate, options: AbortOptions) => Promise<number | undefined>

/** A rate limiter driven by the background controller. */
export interface BackgroundPacer extends RateLimiter {
  readonly controller: BackgroundController
  /** Whether the coordinator paces our streams (it answered a pace update); else reads are paced. */
  readonly senderPaced: boolean
  /** Headers naming the pace session and its rate, for every origin request. */
  requestHeaders: () => Record<string, string>
  /** Stops probing (a paced transfer that moves bytes again starts it anew). */
  stop: () => Promise<void>
}

/** Dependencies of the pacer. */
export interface BackgroundPacerComponents {
  /** The round trip timed when there is no pace updater, or the coordinator has no pacing. */
  probe: DelayProbe
  /** Sender-side pacing: each probe is a pace update. */
  paceUpdate?: PaceUpdater
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
  /** What the status lines name (default "background"). */
  label?: string
}

/**
 * A probe that times a TCP handshake with the coordinator at `url` (then closes the connection): the answer
 * comes from its kernel, so a coordinator busy with other work (or a loaded machine) does not read as a queue
 * (measured with GET /healthz at a load average of 23 on 2 CPUs: a steady 50-70 ms "queueing delay" that ping
 * through the same link did not see, and the rate held at the floor).
 */
export function createConnectProbe (url: string | (() => string)): DelayProbe {
  // a getter follows the agent's coordinator client to the coordinator it fails over to
  const urlOf = typeof url === 'string' ? () => url : url
  return async (options) => {
    const u = new URL(urlOf())
    const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
    await new Promise<void>((resolve, reject) => {
      const socket = connect({ host, port, signal: options.signal })
      socket.once('connect', () => { socket.destroy(); resolve() })
      socket.once('error', (err) => { socket.destroy(); reject(err) })
    })
  }
}

/**
 * A pace updater: POST /v1/pace at `url` (the coordinator) with `authorization` (its Authorization header).
 * One try, no retries: it is also a delay probe, and a retry would time the retry.
 */
export function createPaceUpdater (url: string | (() => string), authorization: (options: AbortOptions) => Promise<string>): PaceUpdater {
  const urlOf = typeof url === 'string' ? () => url : url
  return async (update, options) => {
    const res = await fetch(urlOf().replace(/\/+$/, '') + PACE_ROUTE, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: await authorization(options) },
      body: JSON.stringify(update),
      signal: options.signal
    })
    const text = await res.text()
    // no such route (a coordinator from before pacing), or a login that expired: pace by reading instead
    if (res.status === 404 || res.status === 405 || res.status === 401) return undefined
    if (!res.ok) throw new Error(`POST ${PACE_ROUTE}: HTTP ${res.status}`)
    return PaceUpdateResponse.parse(JSON.parse(text)).rate
  }
}

/**
 * The pacer of a sync's origin transfers: sender-side pacing by `coordinator` (at its URL, with its credentials),
 * delay from TCP handshakes with it.
 */
export function createCoordinatorPacer (
  components: { coordinator: { url: string, authorization: (options: AbortOptions) => Promise<string> }, logger?: AgentLogger },
  init: BackgroundPacerInit = {}
): BackgroundPacer {
  const { coordinator } = components
  const url = (): string => coordinator.url // the one the client talks to now, after a failover too
  const paceUpdate = createPaceUpdater(url, coordinator.authorization)
  return createBackgroundPacer({ probe: createConnectProbe(url), paceUpdate, logger: components.logger }, init)
}

/** Bytes per second that arrived, and that the rate allowed, over about the last `windowMs`, as of each call of measure(). */
interface DeliveryMeter {
  add: (bytes: number) => void
  /** `rate`: the rate allowed since the last call. Undefined until a tenth of the window has passed since the first call. */
  measure: (now: number, rate: number) => { delivered: number, allowed: number } | undefined
}

export function createDeliveryMeter (windowMs: number): DeliveryMeter {
  let total = 0
  let allowed = 0
  // (time, totals so far) at each call, the newest one at least windowMs old kept as the window's start
  const marks: Array<{ t: number, total: number, allowed: number }> = []
  return {
    add (bytes) { total += bytes },
    measure (now, rate) {
      const last = marks.at(-1)
      if (last != null) allowed += rate * (now - last.t) / 1000
      marks.push({ t: now, total, allowed })
      while (marks.length > 2 && now - marks[1].t >= windowMs) marks.shift()
      const first = marks[0]
      const span = (now - first.t) / 1000
      if (span < windowMs / 10_000) return undefined
      return { delivered: (total - first.total) / span, allowed: (allowed - first.allowed) / span }
    }
  }
}

/** Creates a pacer; probing starts with the first bytes taken. */
export function createBackgroundPacer (components: BackgroundPacerComponents, init: BackgroundPacerInit = {}): BackgroundPacer {
  const controller = init.controller ?? createBackgroundController({ maxRate: init.maxRate })
  const interval = init.probeIntervalMs ?? BACKGROUND_PROBE_INTERVAL_MS
  const timeout = init.probeTimeoutMs ?? BACKGROUND_PROBE_TIMEOUT_MS
  const idleMs = init.idleMs ?? BACKGROUND_PROBE_IDLE_MS
  const bucket = createTokenBucket(() => controller.rate)
  // with sender-side pacing, reads are held only to the caps (a coordinator that ignored its pace still meets them)
  const capBucket = createTokenBucket(() => init.maxRate ?? 0)
  const session = randomBytes(16).toString('base64url')
  let paceUpdate = components.paceUpdate
  let senderPaced = false
  let lastTake = -Infinity
  // whether the transfer was held back by the rate since the last sample (else it is application-limited)
  let limited = false
  // sender-paced, nothing holds reads back: the bytes that arrive tell the controller what the path carries
  const delivery = createDeliveryMeter(BACKGROUND_DELIVERY_WINDOW_MS)
  let waiting = 0
  let lastStatus = -Infinity
  let loop: Promise<void> | undefined
  let stopper = new AbortController()

  const logStatus = (c: BackgroundController): void => {
    const paced = senderPaced ? 'sender' : 'reader'
    const message = `${init.label ?? 'background'}: ${(c.rate / 1e6).toFixed(2)} MB/s allowed (${c.phase}, ${paced}-paced), ` +
      `queueing delay ${c.queueDelay.toFixed(0)} ms over a base of ${c.baseDelay.toFixed(0)} ms`
    components.logger?.info(message, { rate: Math.round(c.rate), phase: c.phase, queueDelayMs: Math.round(c.queueDelay), baseDelayMs: Math.round(c.baseDelay) })
  }

  async function probeLoop (signal: AbortSignal): Promise<void> {
    // a transfer waiting on the pacer is not idle: its rate must keep following the delay
    while (!signal.aborted && (waiting > 0 || performance.now() - lastTake < idleMs)) {
      const t0 = performance.now()
      try {
        const probeSignal = AbortSignal.any([signal, AbortSignal.timeout(timeout)])
        if (paceUpdate != null) {
          // not timed: the coordinator's own work (auth, JSON) is in its answer
          const applied = await paceUpdate({ session, rate: Math.round(controller.rate) }, { signal: probeSignal })
          senderPaced = applied != null
          if (applied == null) {
            paceUpdate = undefined
            components.logger?.info('background: the coordinator does not pace streams (no /v1/pace): pacing reads instead')
          }
        }
        const t1 = performance.now()
        await components.probe({ signal: probeSignal })
        const now = performance.now()
        if (senderPaced) {
          // nothing holds reads back: the transfer used its rate when about what it allowed arrived
          const d = delivery.measure(now, controller.rate)
          controller.sample(now, now - t1, d == null ? {} : { delivered: d.delivered, appLimited: d.delivered < BACKGROUND_PATH_LIMITED_SHARE * d.allowed })
        }
        else controller.sample(now, now - t1, { appLimited: !limited && waiting === 0 })
        limited = false
        if (now - lastStatus >= BACKGROUND_STATUS_INTERVAL_MS) {
          lastStatus = now
          logStatus(controller)
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
    get senderPaced () { return senderPaced },
    requestHeaders (): Record<string, string> {
      if (paceUpdate == null) return {}
      return { [PACE_SESSION_HEADER]: session, [PACE_RATE_HEADER]: String(Math.round(controller.rate)) }
    },
    async take (bytes, options = {}) {
      const now = performance.now()
      lastTake = now
      ensureProbing()
      if (senderPaced) {
        delivery.add(bytes)
        const capMs = capBucket.reserve(bytes)
        if (capMs > 0) await sleep(capMs, undefined, { signal: options.signal })
        return
      }
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

/** One round trip to a LAN peer (libp2p ping over the connection to it); resolves when the answer is in. */
export type PeerPing = (peer: string, options: AbortOptions) => Promise<void>

/** Background pacing of LAN uploads: sends wait for the rate; the round trip timed is to the peer served last. */
export interface UploadPacer {
  readonly rate: number
  /** Resolves once `bytes` to `peer` (a peer id) fit the rate. */
  take: (bytes: number, options: { peer: string, signal?: AbortSignal }) => Promise<void>
  stop: () => Promise<void>
}

/**
 * The background controller on LAN uploads (the block server's sends; the policy's LAN upload cap still applies
 * apart): the uploader is the sender, so the pacer's token bucket paces the sends themselves. Delay: a libp2p ping
 * to the peer the last bytes went to, over the same connection, so it waits behind what our sends queue anywhere
 * on the way, our socket buffer included.
 */
export function createUploadPacer (components: { ping: PeerPing, logger?: AgentLogger }, init: BackgroundPacerInit = {}): UploadPacer {
  let peer: string | undefined
  const pacer = createBackgroundPacer({
    // take() names the peer before the first probe can start
    probe: async (options) => { if (peer != null) await components.ping(peer, options) },
    logger: components.logger
  }, { label: 'background LAN uploads', ...init })
  return {
    get rate () { return pacer.rate },
    async take (bytes, options) {
      peer = options.peer
      await pacer.take(bytes, options)
    },
    stop: pacer.stop
  }
}
