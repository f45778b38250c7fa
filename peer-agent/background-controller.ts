/**
 * The rate controller of background mode: delay samples in, a byte rate out.
 * A rate-based reading of LEDBAT (RFC 6817) as LEDBAT++ amends it
 * (draft-irtf-iccrg-ledbat-plus-plus): queueing delay = current delay (the
 * minimum of the last few samples) minus base delay (the minimum over ten
 * one-minute buckets); below the 60 ms target the rate grows, slowed by
 * gain = 1 / min(16, ceil(2 * target / base)); above it the rate falls
 * multiplicatively by min(qd / target - 1, 1/2) at most once per round trip
 * (and not again while the queue the last cut left is still draining);
 * after the first ramp-up and then periodically it drops to the minimum for
 * two round trips (until the queue has drained) so the base delay is measured
 * afresh, then ramps back up to where it was. Sender-paced, a queue of its own
 * holds the rate at what arrives (holdFactor), so it settles at the path's
 * rate with a standing queue near the setpoint instead of growing past it and
 * halving; once it has held the path's rate, it climbs back after a cut or a
 * pause to at most a little above that rate (a queue shows a few hundred ms
 * late: climbing at full speed past it overshot by half). Pure: time is passed
 * in, no I/O.
 */
import {
  BACKGROUND_AVOIDANCE_GROWTH, BACKGROUND_BASE_BUCKET_MS, BACKGROUND_DELIVERY_HEADROOM, BACKGROUND_BASE_HISTORY, BACKGROUND_CURRENT_FILTER,
  BACKGROUND_DECREASE_CONSTANT, BACKGROUND_DRAIN_RTTS, BACKGROUND_GAIN_DIVISOR_MAX, BACKGROUND_MAX_CUT, BACKGROUND_MAX_CUT_SENDER_PACED,
  BACKGROUND_HOLD_GAIN, BACKGROUND_HOLD_MIN_SHARE, BACKGROUND_MIN_RATE, BACKGROUND_MIN_RTT_MS, BACKGROUND_PATH_LIMITED_SHARE,
  BACKGROUND_PATH_PEAK_MS, BACKGROUND_QUEUE_SEEN_SHARE, BACKGROUND_SETPOINT_SHARE,
  BACKGROUND_SLOWDOWN_INTERVAL_FACTOR, BACKGROUND_SLOWDOWN_MAX_MS, BACKGROUND_SLOWDOWN_RTTS, BACKGROUND_START_RATE, BACKGROUND_TARGET_MS
} from './constants.ts'

/** What the controller is doing now. */
export type BackgroundPhase = 'slow-start' | 'avoidance' | 'slowdown'

/** What a delay sample says besides the delay. */
export interface SampleOptions {
  /** Reader-paced: the transfer did not use its rate since the last sample (a quiet link says nothing about a higher rate). */
  appLimited?: boolean
  /** Sender-paced: bytes per second that arrived lately (nothing holds reads back). */
  delivered?: number
  /** Sender-paced: bytes per second the rate allowed over the span whose bytes `delivered` counts (a round trip earlier). */
  allowed?: number
}

/** A delay-based scavenger rate controller. */
export interface BackgroundController {
  /** Bytes per second the transfer may use now. */
  readonly rate: number
  readonly phase: BackgroundPhase
  /** Base delay (ms), Infinity before the first sample. */
  readonly baseDelay: number
  /** Last queueing delay estimate (ms). */
  readonly queueDelay: number
  /**
   * One delay sample (a round trip or a one-way delay, ms) taken at `now` (ms).
   * Reader-paced (no `delivered`): the rate is not raised while `appLimited`.
   * Sender-paced: the rate is not raised while `delivered` is under
   * BACKGROUND_PATH_LIMITED_SHARE of `allowed` (the path or the transfer did not
   * carry it), grows to at most BACKGROUND_DELIVERY_HEADROOM times `delivered`, is
   * held under `delivered` while the queue is above the setpoint, and a cut starts
   * from `delivered` when the rate is above it (its excess is a queue) and is
   * LEDBAT++'s up to a half (BACKGROUND_MAX_CUT_SENDER_PACED), not a quarter.
   */
  sample: (now: number, delayMs: number, options?: SampleOptions) => void
  /** A probe got no answer in time: treated like a loss, the rate is halved. */
  lost: (now: number) => void
}

/** Options of the controller. */
export interface BackgroundControllerInit {
  /** Queueing delay to stay under (ms). */
  targetMs?: number
  /** Upper cap in bytes per second (--wan-limit, the policy's cap; 0 = none). */
  maxRate?: number
  minRate?: number
  startRate?: number
  /** Samples the current-delay filter takes the minimum of. */
  currentFilter?: number
  baseHistory?: number
  baseBucketMs?: number
}

/** The base delay: minimum per bucket of time, over the last `history` buckets (RFC 6817 section 3.4.2). */
interface BaseDelayFilter {
  add: (now: number, delay: number) => void
  readonly value: number
}

function createBaseDelayFilter (history: number, bucketMs: number): BaseDelayFilter {
  const buckets: Array<{ start: number, min: number }> = []
  return {
    add (now, delay) {
      const last = buckets.at(-1)
      if (last == null || now - last.start >= bucketMs) {
        buckets.push({ start: now, min: delay })
        if (buckets.length > history) buckets.shift()
      } else {
        last.min = Math.min(last.min, delay)
      }
    },
    get value () {
      let min = Infinity
      for (const b of buckets) min = Math.min(min, b.min)
      return min
    }
  }
}

/** LEDBAT++ gain: slower ramp-up where the base delay is short compared with the target (section 4.1). */
export function ledbatGain (targetMs: number, baseMs: number): number {
  const divisor = Math.min(BACKGROUND_GAIN_DIVISOR_MAX, Math.ceil(2 * targetMs / Math.max(baseMs, 1)))
  return 1 / Math.max(1, divisor)
}

/** Creates a controller; `now` of the first sample starts its clock. */
export function createBackgroundController (init: BackgroundControllerInit = {}): BackgroundController {
  const target = init.targetMs ?? BACKGROUND_TARGET_MS
  const maxRate = (init.maxRate ?? 0) > 0 ? init.maxRate! : Infinity
  const minRate = Math.min(init.minRate ?? BACKGROUND_MIN_RATE, maxRate)
  const base = createBaseDelayFilter(init.baseHistory ?? BACKGROUND_BASE_HISTORY, init.baseBucketMs ?? BACKGROUND_BASE_BUCKET_MS)
  const filterSize = Math.max(1, init.currentFilter ?? BACKGROUND_CURRENT_FILTER)
  const recent: number[] = []
  let rate = clamp(init.startRate ?? BACKGROUND_START_RATE)
  let phase: BackgroundPhase = 'slow-start'
  let queueDelay = 0
  let last: number | undefined
  let lastDecrease = -Infinity
  let queueAtDecrease = 0
  // queueing delays of the last few samples taken after the last cut had reached the path (stillGrowing), and their count
  let sinceDecrease: number[] = []
  let countSinceDecrease = 0
  // the rate the path carried while we held a queue of our own (sender-paced), and when
  let peak = { rate: 0, t: -Infinity }
  // slow start climbs back to this after a slowdown; Infinity on the first ramp-up
  let ssthresh = Infinity
  let slowdownAt = Infinity
  let slowdownStart = 0
  let slowdownEnd = 0
  let rampedOnce = false
  const setpoint = BACKGROUND_SETPOINT_SHARE * target

  /**
   * Sender-paced near the path's rate, the rate is held at what arrives times this: a little more below the
   * setpoint, a little less above it (BACKGROUND_HOLD_GAIN), so the queue settles there. A rate-based sender
   * has no window to bound its queue: a rate a little above the link's grows the queue until a cut, and
   * growth-then-halving held an idle 20 mbit link 0.35-0.72 used (bench/background.ts). The gain is small
   * because the delay it reacts to is a few samples old (the current-delay filter).
   */
  function holdFactor (queueDelay: number): number {
    return 1 + BACKGROUND_HOLD_GAIN * (setpoint - queueDelay) / setpoint
  }

  function clamp (r: number): number {
    return Math.min(maxRate, Math.max(minRate, r))
  }

  function rttOf (current: number): number {
    return Math.max(BACKGROUND_MIN_RTT_MS, current)
  }

  function exitSlowStart (now: number, rtt: number): void {
    phase = 'avoidance'
    if (!rampedOnce) {
      rampedOnce = true
      slowdownAt = now + 2 * rtt
    } else {
      // next slowdown 9x the last one's length later (slowdown + ramp back), so it costs ~10 %
      slowdownAt = now + BACKGROUND_SLOWDOWN_INTERVAL_FACTOR * Math.max(now - slowdownStart, rtt)
    }
    ssthresh = Infinity
  }

  /**
   * Whether the queue the last cut left has stopped draining. A sample that started before the cut (or less than a
   * round trip after it) shows the queue from before the cut took effect, and the current-delay filter holds such
   * samples for a few more: judged by them, a queue still building from before the cut read as "not draining" and
   * the rate was cut to a half, a quarter and an eighth within 300 ms (bench/background.ts, 40 ms: 2.04 MB/s to
   * 0.26 while the queue was already draining). Two samples taken after the cut are needed, and their minimum.
   */
  function stillGrowing (): boolean {
    return countSinceDecrease >= 2 && Math.min(...sinceDecrease) >= queueAtDecrease
  }

  /** A sample that started a round trip after the last cut (the cut's new rate had reached the sender) counts for stillGrowing. */
  function noteSinceDecrease (now: number, delayMs: number, baseDelay: number): void {
    if (now - delayMs < lastDecrease + rttOf(baseDelay)) return
    sinceDecrease.push(Math.max(0, delayMs - baseDelay))
    if (sinceDecrease.length > filterSize) sinceDecrease.shift()
    countSinceDecrease++
  }

  /**
   * Sender-paced: what the path carries, from what arrives with a queue of our own under the target (above it we
   * yield, and a rate held then is our share, not the path's); forgotten when more arrives with no queue (then it
   * was not the path's rate: a busy agent's late probes read as a queue).
   */
  function notePeak (now: number, atPath: boolean, delivered: number): void {
    if (atPath && queueDelay <= target && (delivered >= peak.rate || now - peak.t >= BACKGROUND_PATH_PEAK_MS)) {
      peak = { rate: delivered, t: now }
    } else if (!atPath && queueDelay <= BACKGROUND_QUEUE_SEEN_SHARE * setpoint && delivered > peak.rate * (1 + BACKGROUND_HOLD_GAIN / 2)) {
      peak = { rate: 0, t: -Infinity }
    }
  }

  /**
   * The most avoidance grows to, sender-paced: a little above the rate the path carried lately (Infinity when none
   * is known). An empty queue (after a cut, a pause) says nothing of the path's rate until a queue builds, which
   * shows a few hundred ms late; growing at full speed meanwhile went to 1.45x the link (bench/background.ts, 40 ms)
   * and the queue to 130 ms.
   */
  function peakCap (now: number): number {
    return now - peak.t < BACKGROUND_PATH_PEAK_MS ? Math.max(rate, peak.rate * (1 + BACKGROUND_HOLD_GAIN)) : Infinity
  }

  function decrease (now: number, rtt: number, delivered: number | undefined): void {
    if (now - lastDecrease < rtt) return
    // the queue a cut leaves drains over more than one round trip (at the link rate minus ours): while it
    // is still draining, the last cut is working and another would only empty the link
    if (now - lastDecrease < BACKGROUND_DRAIN_RTTS * rtt && !stillGrowing()) return
    lastDecrease = now
    queueAtDecrease = queueDelay
    sinceDecrease = []
    countSinceDecrease = 0
    const cut = Math.min(BACKGROUND_DECREASE_CONSTANT * (queueDelay / target - 1), delivered == null ? BACKGROUND_MAX_CUT : BACKGROUND_MAX_CUT_SENDER_PACED)
    // climbing back after a slowdown, the rate to cut from is the one before it: cut from the climb's, a queue
    // left from before the slowdown put the rate at the floor, whence avoidance took 5 s to reach a third of the
    // link (bench/background.ts, 20 ms)
    const from = phase === 'slow-start' && ssthresh < Infinity ? ssthresh : Math.min(rate, delivered ?? Infinity)
    rate = clamp(from * (1 - cut))
    if (phase === 'slow-start') exitSlowStart(now, rtt)
  }

  return {
    get rate () { return rate },
    get phase () { return phase },
    get baseDelay () { return base.value },
    get queueDelay () { return queueDelay },
    sample (now, delayMs, options = {}) {
      if (!Number.isFinite(delayMs) || delayMs < 0) return
      base.add(now, delayMs)
      recent.push(delayMs)
      if (recent.length > filterSize) recent.shift()
      const current = Math.min(...recent)
      const baseDelay = base.value
      queueDelay = Math.max(0, current - baseDelay)
      const rtt = rttOf(current)
      noteSinceDecrease(now, delayMs, baseDelay)
      const dt = last == null ? 0 : Math.min(now - last, 4 * rtt)
      last = now
      if (phase === 'slowdown') {
        // not before the queue has drained (or a second has passed: then it is not ours): the climb back would
        // read what is left of it as a queue and stop at the floor (bench/background.ts, 20 ms: two round trips
        // left 47 ms of a slow start's overshoot, and avoidance then took 7 s to reach half the link)
        const drained = queueDelay <= BACKGROUND_QUEUE_SEEN_SHARE * setpoint || now - slowdownStart >= BACKGROUND_SLOWDOWN_MAX_MS
        if (now >= slowdownEnd && drained) {
          // ramp back to where the rate was (LEDBAT++ section 4.4)
          phase = 'slow-start'
          rate = clamp(Math.max(rate, BACKGROUND_START_RATE))
        }
        return
      }
      // not while the queue a cut left drains: that is a slowdown already, and one begun then climbed back only to
      // the cut rate (bench/background.ts, 40 ms: 0.26 MB/s of a 2.4 MB/s link, then 2 s of avoidance to get back)
      if (phase === 'avoidance' && now >= slowdownAt && now - lastDecrease >= BACKGROUND_DRAIN_RTTS * rtt) {
        ssthresh = rate
        slowdownStart = now
        slowdownEnd = now + BACKGROUND_SLOWDOWN_RTTS * rtt
        phase = 'slowdown'
        rate = minRate
        return
      }
      if (queueDelay > target) {
        decrease(now, rtt, options.delivered)
        return
      }
      if (dt === 0) return
      const { delivered, allowed } = options
      // sender-paced, and not climbing back to a rate the path carried just before a slowdown (what arrives
      // during and after one says nothing about the path): the rate follows what arrives
      const held = delivered != null && !(phase === 'slow-start' && rate < ssthresh && ssthresh < Infinity)
      // application- or path-limited: what we allowed did not arrive, so a quiet link says nothing about a higher rate
      const limited = options.appLimited === true || (held && allowed != null && delivered < BACKGROUND_PATH_LIMITED_SHARE * allowed)
      // the gain slows the ramp-up of short round trips, which take more steps per second; steps are at
      // most one per BACKGROUND_MIN_RTT_MS here, so a shorter base needs no further slowing (measured: an
      // idle link with a 2 ms base got 0.09 used at gain 1/16)
      const gain = ledbatGain(target, Math.max(baseDelay, BACKGROUND_MIN_RTT_MS))
      const rtts = dt / rtt
      // near the path's rate: a queue of our own while most of what we allowed arrives. A transfer that does not
      // use its rate (at its start, between requests) is only not raised: held at what it used, with a busy agent's
      // late probes reading as a few ms of queue, it fell to the floor (bench/background.ts, 40 ms: 6 s to climb back)
      const atPath = held && queueDelay > BACKGROUND_QUEUE_SEEN_SHARE * setpoint &&
        (allowed == null || delivered >= BACKGROUND_HOLD_MIN_SHARE * allowed)
      if (held) notePeak(now, atPath, delivered)
      let next = rate
      if (phase === 'slow-start') {
        if (queueDelay > (delivered != null ? setpoint : 0.75 * target)) { exitSlowStart(now, rtt); return }
        // x(1 + gain) per round trip, as TCP slow start doubles per round trip
        if (!limited) next = Math.min(rate * (1 + gain) ** rtts, ssthresh)
      } else if (!limited) {
        next = rate * (1 + gain * (1 - queueDelay / target) * BACKGROUND_AVOIDANCE_GROWTH * rtts)
      }
      if (held) {
        // far from the path's rate, at most a little above what arrives, so one sample's growth cannot overshoot
        // by much; near it, held at what arrives (holdFactor), so the queue settles at the setpoint
        next = Math.min(next, atPath ? delivered * holdFactor(queueDelay) : Math.max(rate, BACKGROUND_DELIVERY_HEADROOM * delivered))
        if (phase === 'avoidance' && !atPath) next = Math.min(next, peakCap(now))
      }
      rate = clamp(next)
      if (phase === 'slow-start' && (rate >= ssthresh || rate >= maxRate)) exitSlowStart(now, rtt)
    },
    lost (now) {
      rate = clamp(rate / 2)
      lastDecrease = now
      if (phase === 'slow-start') exitSlowStart(now, rttOf(base.value === Infinity ? 0 : base.value))
    }
  }
}
