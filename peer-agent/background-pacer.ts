/**
 * Background mode's I/O side: a RateLimiter whose rate the background
 * controller sets from round-trip probes.
 *
 * Sender-side pacing (protocol/pace.ts): origin requests name a pace session
 * and the rate (requestHeaders), a POST /v1/pace beside the probes tells the
 * coordinator each new rate, and each probe times a round trip (a TCP
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
import { appendFileSync } from 'node:fs'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { PACE_RATE_HEADER, PACE_ROUTE, PACE_SESSION_HEADER, PaceUpdateResponse, type PaceUpdate } from '../protocol/pace.ts'
import { createBackgroundController, type BackgroundController } from './background-controller.ts'
import {
  BACKGROUND_PROBE_IDLE_MS, BACKGROUND_RECHECK_MS, BACKGROUND_PROBE_INTERVAL_MS, BACKGROUND_PROBE_TIMEOUT_MS,
  BACKGROUND_STATUS_INTERVAL_MS, BACKGROUND_DELIVERY_WINDOW_MS, BACKGROUND_PACE_UPDATE_MS
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
  /** Gets every delay sample and what the controller made of it (the benchmark's trace; TRIMSWARM_BACKGROUND_TRACE). */
  trace?: (sample: BackgroundSample) => void
}

/** One delay sample as the controller saw it (times in ms of performance.now(), rates in bytes/s). */
export interface BackgroundSample {
  t: number
  /** Wall-clock time (ms since 1970), to line samples up with what else happened. */
  wall: number
  delayMs: number
  baseDelayMs: number
  queueDelayMs: number
  rate: number
  phase: string
  delivered?: number
  allowed?: number
}

/**
 * A trace sink appending one JSON line per sample to `path` (TRIMSWARM_BACKGROUND_TRACE names it: a diagnostic
 * for bench/background.ts, off unless set), or undefined without a path.
 */
export function createTraceFile (path: string | undefined): ((sample: BackgroundSample) => void) | undefined {
  if (path == null || path === '') return undefined
  return (sample) => {
    // a few hundred bytes ten times a second; a trace that cannot be written is not worth failing a sync for
    try { appendFileSync(path, JSON.stringify(sample) + '\n', { mode: 0o600 }) } catch {}
  }
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
  const trace = createTraceFile(process.env.TRIMSWARM_BACKGROUND_TRACE)
  return createBackgroundPacer({ probe: createConnectProbe(url), paceUpdate, logger: components.logger }, { trace, ...init })
}

/** Bytes per second that arrived, and that the rate allowed, over about the last `windowMs`, as of each call of measure(). */
export interface DeliveryMeter {
  add: (bytes: number) => void
  /** The sender applies `rate` from `t` on (the coordinator answered the pace update that set it). */
  setRate: (t: number, rate: number) => void
  /**
   * What arrived over the window ending `now`, and what the rate allowed over the same span `lagMs` earlier:
   * bytes sent at a new rate arrive a round trip after the rate changed, so comparing the same span made a
   * ramp-up look path-limited at every step (measured: slow start stalled at each step for the 500 ms window).
   * Undefined until a tenth of the window has passed since the first call.
   */
  measure: (now: number, lagMs: number) => { delivered: number, allowed: number } | undefined
}

export function createDeliveryMeter (windowMs: number): DeliveryMeter {
  let total = 0
  // (time, bytes so far) at each call of measure, the newest one at least windowMs old kept as the window's start
  const marks: Array<{ t: number, total: number }> = []
  // the rate from each time on, the oldest kept covering 2 windows back (lags beyond a window are cut to one)
  const rates: Array<{ t: number, rate: number }> = []

  /** Bytes the rate allowed from a to b. */
  function allowedBetween (a: number, b: number): number {
    let bytes = 0
    for (let i = 0; i < rates.length; i++) {
      const from = Math.max(a, rates[i].t)
      const to = Math.min(b, rates[i + 1]?.t ?? Infinity)
      if (to > from) bytes += rates[i].rate * (to - from) / 1000
    }
    return bytes
  }

  return {
    add (bytes) { total += bytes },
    setRate (t, rate) {
      rates.push({ t, rate })
      while (rates.length > 2 && t - rates[1].t >= 2 * windowMs) rates.shift()
    },
    measure (now, lagMs) {
      marks.push({ t: now, total })
      while (marks.length > 2 && now - marks[1].t >= windowMs) marks.shift()
      const first = marks[0]
      const spanMs = now - first.t
      if (spanMs < windowMs / 10) return undefined
      const lag = Math.min(Math.max(0, lagMs), windowMs)
      return { delivered: (total - first.total) / spanMs * 1000, allowed: allowedBetween(first.t - lag, now - lag) / spanMs * 1000 }
    }
  }
}

function sampleOf (c: BackgroundController, t: number, delayMs: number): BackgroundSample {
  return {
    t: Math.round(t), wall: Date.now(), delayMs: round1(delayMs), baseDelayMs: round1(c.baseDelay), queueDelayMs: round1(c.queueDelay),
    rate: Math.round(c.rate), phase: c.phase
  }
}

function round1 (x: number): number {
  return Math.round(x * 10) / 10
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
  // the last rate the coordinator was told, and when
  let lastSent: { t: number, rate: number } | undefined
  let updating: Promise<void> | undefined
  let stopper = new AbortController()

  const logStatus = (c: BackgroundController): void => {
    const paced = senderPaced ? 'sender' : 'reader'
    const message = `${init.label ?? 'background'}: ${(c.rate / 1e6).toFixed(2)} MB/s allowed (${c.phase}, ${paced}-paced), ` +
      `queueing delay ${c.queueDelay.toFixed(0)} ms over a base of ${c.baseDelay.toFixed(0)} ms`
    components.logger?.info(message, { rate: Math.round(c.rate), phase: c.phase, queueDelayMs: Math.round(c.queueDelay), baseDelayMs: Math.round(c.baseDelay) })
  }

  /**
   * Whether the coordinator should hear the rate now: a lower one at once (a cut, a hold under what arrives),
   * a higher one at most every BACKGROUND_PACE_UPDATE_MS, an unchanged one (within 2 %) not at all. Probes
   * come every BACKGROUND_PROBE_INTERVAL_MS; a POST with each doubled the coordinator's work for nothing.
   */
  function paceUpdateDue (now: number): boolean {
    if (lastSent == null || !senderPaced) return true
    const rate = Math.round(controller.rate)
    if (Math.abs(rate - lastSent.rate) <= 0.02 * lastSent.rate) return false
    return rate < lastSent.rate || now - lastSent.t >= BACKGROUND_PACE_UPDATE_MS
  }

  /** Tells the coordinator the rate (not timed: its own work, auth and JSON, is in the answer). */
  async function updatePace (update: PaceUpdater, loopSignal: AbortSignal): Promise<void> {
    const asked = Math.round(controller.rate)
    lastSent = { t: performance.now(), rate: asked }
    try {
      const applied = await update({ session, rate: asked }, { signal: AbortSignal.any([loopSignal, AbortSignal.timeout(timeout)]) })
      senderPaced = applied != null
      if (applied != null) delivery.setRate(performance.now(), applied)
      else {
        paceUpdate = undefined
        components.logger?.info('background: the coordinator does not pace streams (no /v1/pace): pacing reads instead')
      }
    } catch {
      // no answer in time (or an error answer): like a lost packet, a sign to slow down
      if (!loopSignal.aborted) controller.lost(performance.now())
    } finally {
      updating = undefined
    }
  }

  async function probeLoop (signal: AbortSignal): Promise<void> {
    // a transfer waiting on the pacer is not idle: its rate must keep following the delay
    while (!signal.aborted && (waiting > 0 || performance.now() - lastTake < idleMs)) {
      const t0 = performance.now()
      try {
        const probeSignal = AbortSignal.any([signal, AbortSignal.timeout(timeout)])
        // the pace update runs beside the probes: awaited, a slow answer (a loaded coordinator) spaced the samples
        // out to 150 ms and more, and the current-delay filter saw a queue that much later
        if (paceUpdate != null && updating == null && paceUpdateDue(t0)) updating = updatePace(paceUpdate, signal)
        const t1 = performance.now()
        await components.probe({ signal: probeSignal })
        const now = performance.now()
        if (senderPaced) {
          // nothing holds reads back: the transfer used its rate when about what it allowed arrived
          // the rate applied at the coordinator reaches us about one probe's round trip later
          const d = delivery.measure(now, now - t1)
          controller.sample(now, now - t1, d ?? {})
          init.trace?.({ ...sampleOf(controller, now, now - t1), ...d })
        }
        else {
          controller.sample(now, now - t1, { appLimited: !limited && waiting === 0 })
          init.trace?.(sampleOf(controller, now, now - t1))
        }
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
      await updating
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
