import { describe, expect, it } from 'vitest'
import { createBackgroundController, ledbatGain, type BackgroundController } from '../../peer-agent/background-controller.ts'
import { createDeliveryMeter } from '../../peer-agent/background-pacer.ts'
import {
  BACKGROUND_DELIVERY_HEADROOM, BACKGROUND_DELIVERY_WINDOW_MS, BACKGROUND_HOLD_GAIN, BACKGROUND_MAX_CUT, BACKGROUND_MAX_CUT_SENDER_PACED, BACKGROUND_MIN_RATE,
  BACKGROUND_PROBE_INTERVAL_MS, BACKGROUND_SETPOINT_SHARE, BACKGROUND_TARGET_MS
} from '../../peer-agent/constants.ts'

/**
 * A fluid model of a bottleneck: `capacity` bytes/s, a drop-tail queue of
 * `queueMs` worth of bytes, `baseMs` of round trip, and optional foreground
 * traffic arriving at `foreground` bytes/s. Each step the controller's rate
 * flows in, the link drains, and a delay sample (base + queue) goes back.
 */
function simulate (c: BackgroundController, init: { capacity: number, baseMs: number, queueMs: number, seconds: number, foreground?: (t: number) => number, startMs?: number, stepMs?: number }): { delays: number[], rates: number[], shares: number[], end: number } {
  const step = init.stepMs ?? 20
  const qmax = init.capacity * init.queueMs / 1000
  let q = 0
  const delays: number[] = []
  const rates: number[] = []
  const shares: number[] = []
  let t = init.startMs ?? 0
  const end = t + init.seconds * 1000
  for (; t < end; t += step) {
    const fg = init.foreground?.(t) ?? 0
    const inflow = (c.rate + fg) * step / 1000
    const out = init.capacity * step / 1000
    q = Math.min(qmax, Math.max(0, q + inflow - out))
    // when the link is full, each flow gets its share of what leaves it
    const served = Math.min(inflow, out + q)
    shares.push(inflow === 0 ? 0 : served * (c.rate * step / 1000) / inflow / (step / 1000) / init.capacity)
    const delay = init.baseMs + q / init.capacity * 1000
    delays.push(delay - init.baseMs)
    rates.push(c.rate)
    c.sample(t, delay)
  }
  return { delays, rates, shares, end: t }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length

/** A small seeded generator (mulberry32), so a simulation with jitter is the same every run. */
function seeded (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Sender-side pacing as bench/background.ts runs it, in 5 ms steps: a rate the controller sets reaches the
 * coordinator half a round trip later (the pace update), its bytes queue at a drop-tail bottleneck of
 * `capacity` and arrive in order half a round trip after leaving it; the pacer's delivery meter counts them
 * and compares with the rate applied one probe delay earlier; a probe every BACKGROUND_PROBE_INTERVAL_MS sees
 * base + queue + `jitter()` (a loaded machine schedules the prober late). Returns per-step shares of the link
 * used by the transfer and queueing delays, and the rate.
 */
function simulatePaced (c: BackgroundController, init: { capacity: number, baseMs: number, queueMs: number, seconds: number, jitter?: () => number, foreground?: (t: number) => number, until?: (t: number) => boolean }): { used: number[], queue: number[], rates: number[], step: number, end: number } {
  const step = 5
  const qmax = init.capacity * init.queueMs / 1000
  const meter = createDeliveryMeter(BACKGROUND_DELIVERY_WINDOW_MS)
  const updates: Array<{ t: number, rate: number }> = []
  const arrivals: Array<{ t: number, bytes: number }> = []
  let sending = c.rate
  let q = 0
  let lastArrival = 0
  let nextProbe = 0
  const used: number[] = []
  const queue: number[] = []
  const rates: number[] = []
  let t = 0
  for (; t < init.seconds * 1000 && init.until?.(t) !== true; t += step) {
    while (updates.length > 0 && updates[0].t <= t) {
      sending = updates.shift()!.rate
      meter.setRate(t, sending)
    }
    const ours = sending * step / 1000
    const theirs = (init.foreground?.(t) ?? 0) * step / 1000
    const out = init.capacity * step / 1000
    const left = Math.min(out, q + ours + theirs)
    q = Math.min(qmax, Math.max(0, q + ours + theirs - out))
    const oursLeft = ours + theirs === 0 ? 0 : left * ours / (ours + theirs)
    const queueMs = q / init.capacity * 1000
    lastArrival = Math.max(lastArrival, t + init.baseMs / 2 + queueMs)
    arrivals.push({ t: lastArrival, bytes: oursLeft })
    while (arrivals.length > 0 && arrivals[0].t <= t) meter.add(arrivals.shift()!.bytes)
    used.push(oursLeft / out)
    queue.push(queueMs)
    rates.push(c.rate)
    if (t >= nextProbe) {
      const delay = init.baseMs + queueMs + (init.jitter?.() ?? 0)
      c.sample(t, delay, meter.measure(t, delay) ?? {})
      updates.push({ t: t + init.baseMs / 2 + 2, rate: c.rate })
      nextProbe = t + Math.max(BACKGROUND_PROBE_INTERVAL_MS, delay)
    }
  }
  return { used, queue, rates, step, end: t }
}

describe('background controller', () => {
  it('ramps up to the link on an idle link and keeps the queue under the target', () => {
    const capacity = 20e6 / 8
    const c = createBackgroundController()
    const r = simulate(c, { capacity, baseMs: 40, queueMs: 300, seconds: 60 })
    // after the ramp-up (first 10 s), the transfer uses most of the link
    const settled = r.rates.slice(500)
    expect(mean(settled.map(x => Math.min(x, capacity))) / capacity).toBeGreaterThan(0.7)
    expect(mean(r.delays.slice(500))).toBeLessThan(BACKGROUND_TARGET_MS)
  })

  it('ramps up with a 300 ms base round trip too', () => {
    const capacity = 20e6 / 8
    const c = createBackgroundController()
    const r = simulate(c, { capacity, baseMs: 300, queueMs: 300, seconds: 60, stepMs: 100 })
    expect(mean(r.rates.slice(100).map(x => Math.min(x, capacity))) / capacity).toBeGreaterThan(0.7)
  })

  it('backs off multiplicatively when queueing delay rises above the target, at most once per round trip', () => {
    // filter of 1 sample, so each sample's queue shows at once (the filter has its own test)
    const c = createBackgroundController({ startRate: 1_000_000, currentFilter: 1 })
    c.sample(0, 50) // base 50 ms
    const before = c.rate
    // delay 50 + 120 ms of queue: qd/target - 1 = 1 -> the cut is capped (BACKGROUND_MAX_CUT)
    const keep = 1 - BACKGROUND_MAX_CUT
    c.sample(100, 170)
    expect(c.queueDelay).toBe(120)
    expect(c.rate).toBeCloseTo(before * keep, 6)
    c.sample(110, 170) // 10 ms later: same round trip, no second cut
    expect(c.rate).toBeCloseTo(before * keep, 6)
    // a probe that started before the cut reached the path (one base round trip after it) cannot show it
    c.sample(300, 170)
    expect(c.rate).toBeCloseTo(before * keep, 6)
    // two that started after it still see the queue the cut saw: cut again
    c.sample(400, 170)
    expect(c.rate).toBeCloseTo(before * keep, 6)
    c.sample(500, 170)
    expect(c.rate).toBeCloseTo(before * keep * keep, 6)
    // a smaller excess cuts less: qd = 66 ms -> 1 - (66/60 - 1) = 0.9
    const d = createBackgroundController({ startRate: 1_000_000, currentFilter: 1 })
    d.sample(0, 50)
    const b2 = d.rate
    d.sample(100, 116)
    expect(d.rate / b2).toBeCloseTo(0.9, 6)
  })

  it('does not cut again while the queue the last cut left is draining, and does while it still grows', () => {
    const c = createBackgroundController({ startRate: 1_000_000, currentFilter: 1 })
    c.sample(0, 50)
    c.sample(100, 170) // qd 120: cut to a half
    const cut = c.rate
    c.sample(300, 150) // qd 100, above the target but falling: the cut works, no second one
    expect(c.rate).toBe(cut)
    c.sample(500, 200) // qd 150, growing again: cut
    expect(c.rate).toBeLessThan(cut)
  })

  it('yields to foreground traffic that fills the queue and takes the link back when it ends', () => {
    const capacity = 20e6 / 8
    const c = createBackgroundController()
    // a foreground flow that keeps sending at the link rate from 20 s to 40 s (a TCP download filling the queue)
    const fg = (t: number): number => t >= 20_000 && t < 40_000 ? capacity : 0
    const r = simulate(c, { capacity, baseMs: 40, queueMs: 300, seconds: 70, foreground: fg })
    const during = r.rates.slice(1250, 2000) // 25 s .. 40 s
    expect(mean(during) / capacity).toBeLessThan(0.1)
    const after = r.rates.slice(3000) // 60 s .. 70 s
    expect(mean(after.map(x => Math.min(x, capacity))) / capacity).toBeGreaterThan(0.7)
  })

  it('tracks the base delay as the minimum over the last ten one-minute buckets', () => {
    const c = createBackgroundController()
    c.sample(0, 80)
    c.sample(1_000, 30)
    c.sample(2_000, 90)
    expect(c.baseDelay).toBe(30)
    // the route changes: every sample is 100 ms from minute 1 on; the old 30 ms minimum stays for 10 buckets
    let t = 60_000
    for (; t < 9 * 60_000; t += 1_000) c.sample(t, 100)
    expect(c.baseDelay).toBe(30)
    for (; t < 12 * 60_000; t += 1_000) c.sample(t, 100)
    expect(c.baseDelay).toBe(100)
  })

  it('does not read single delayed samples as a queue (minimum filter over recent samples)', () => {
    const c = createBackgroundController({ startRate: 500_000 })
    let spikes = 0
    for (let t = 0; t < 20_000; t += 50) {
      // every 4th sample is 200 ms late (jitter), the rest see an empty queue
      const spike = (t / 50) % 4 === 3
      if (spike) spikes++
      c.sample(t, spike ? 250 : 50 + Math.random() * 5)
    }
    expect(spikes).toBeGreaterThan(50)
    expect(c.queueDelay).toBeLessThan(10)
    expect(c.rate).toBeGreaterThan(500_000)
  })

  it('never goes above the cap (--wan-limit) nor below the minimum', () => {
    const cap = 300_000
    const c = createBackgroundController({ maxRate: cap })
    const r = simulate(c, { capacity: 20e6 / 8, baseMs: 30, queueMs: 300, seconds: 30 })
    expect(Math.max(...r.rates)).toBeLessThanOrEqual(cap)
    expect(r.rates.at(-1)).toBeGreaterThan(cap * 0.5)
    const d = createBackgroundController()
    for (let t = 0; t < 30_000; t += 100) d.sample(t, t < 200 ? 20 : 400 + (t % 1000) / 10) // a queue that keeps growing
    expect(d.rate).toBe(BACKGROUND_MIN_RATE)
  })

  it('slows down periodically to re-measure the base delay, about a tenth of the time', () => {
    const capacity = 20e6 / 8
    const c = createBackgroundController()
    const phases: string[] = []
    let t = 0
    let q = 0
    for (; t < 120_000; t += 20) {
      q = Math.min(capacity * 0.3, Math.max(0, q + (c.rate - capacity) * 0.02))
      c.sample(t, 40 + q / capacity * 1000)
      phases.push(c.phase)
    }
    const slow = phases.filter(p => p === 'slowdown').length
    expect(slow).toBeGreaterThan(0)
    expect(slow / phases.length).toBeLessThan(0.15)
    // more than one slowdown happened (they recur)
    let starts = 0
    for (let i = 1; i < phases.length; i++) if (phases[i] === 'slowdown' && phases[i - 1] !== 'slowdown') starts++
    expect(starts).toBeGreaterThan(1)
  })

  it('halves the rate when a probe is lost', () => {
    const c = createBackgroundController({ startRate: 800_000 })
    c.sample(0, 40)
    c.lost(10)
    expect(c.rate).toBe(400_000)
  })

  it('does not raise the rate while the transfer does not use it (application-limited)', () => {
    const c = createBackgroundController({ startRate: 100_000 })
    for (let t = 0; t < 5_000; t += 100) c.sample(t, 40, { appLimited: true })
    expect(c.rate).toBe(100_000)
    for (let t = 5_000; t < 5_500; t += 100) c.sample(t, 40)
    expect(c.rate).toBeGreaterThan(100_000)
  })

  it('with sender pacing, cuts from the delivered rate when the rate is above it, by up to a half', () => {
    // the rate says 4 MB/s but the path carried 2 MB/s: the excess was a queue, cutting from 4 MB/s would keep it
    const c = createBackgroundController({ startRate: 4_000_000, currentFilter: 1 })
    c.sample(0, 50, { delivered: 2_000_000 })
    c.sample(100, 200, { delivered: 2_000_000 }) // 150 ms of queue
    expect(c.rate).toBeCloseTo(2_000_000 * (1 - BACKGROUND_MAX_CUT_SENDER_PACED), 6)
    // a delivered rate above the rate (a burst that arrived late) does not raise it
    const d = createBackgroundController({ startRate: 1_000_000, currentFilter: 1 })
    d.sample(0, 50, { delivered: 3_000_000 })
    d.sample(100, 200, { delivered: 3_000_000 })
    expect(d.rate).toBeCloseTo(1_000_000 * (1 - BACKGROUND_MAX_CUT_SENDER_PACED), 6)
  })

  it('with sender pacing, grows to at most a little above what arrives', () => {
    // a 300 ms base: slow start would multiply the rate by 2 per 300 ms sample
    const c = createBackgroundController({ startRate: 1_000_000 })
    c.sample(0, 300, { delivered: 1_000_000 })
    c.sample(300, 300, { delivered: 400_000 })
    expect(c.rate).toBe(1_000_000) // never lowered for it
    c.sample(600, 300, { delivered: 1_000_000 })
    expect(c.rate).toBeCloseTo(1_000_000 * BACKGROUND_DELIVERY_HEADROOM, 6)
    const free = createBackgroundController({ startRate: 1_000_000 })
    free.sample(0, 300)
    free.sample(300, 300)
    expect(free.rate).toBeGreaterThan(1_900_000)
  })

  it('with sender pacing (delivered rates fed back), uses an idle link, keeps the queue under the target, and yields', () => {
    const capacity = 20e6 / 8
    const c = createBackgroundController()
    const step = 100
    const qmax = capacity * 0.3
    let q = 0
    const used: number[] = []
    const delays: number[] = []
    let delivered = 0
    for (let t = 0; t < 60_000; t += step) {
      const fg = t >= 40_000 ? capacity : 0 // a foreground download from 40 s on
      const inflow = (c.rate + fg) * step / 1000
      const out = capacity * step / 1000
      q = Math.min(qmax, Math.max(0, q + inflow - out))
      const ours = inflow === 0 ? 0 : Math.min(inflow, out) * (c.rate * step / 1000) / inflow
      delivered = 0.5 * delivered + 0.5 * ours / (step / 1000)
      used.push(ours / (step / 1000) / capacity)
      delays.push(q / capacity * 1000)
      c.sample(t, 40 + q / capacity * 1000, { delivered, appLimited: ours < 0.9 * c.rate * step / 1000 })
    }
    expect(mean(used.slice(100, 400))).toBeGreaterThan(0.7)
    expect(mean(delays.slice(100, 400))).toBeLessThan(BACKGROUND_TARGET_MS)
    // beside the download it falls to a small share within a few seconds
    expect(mean(used.slice(450, 600))).toBeLessThan(0.1)
  })

  it('with sender pacing on an idle link, settles at the link rate with a short queue (no growth-then-halving sawtooth)', () => {
    const capacity = 20e6 / 8
    for (const baseMs of [1, 20, 40]) {
      for (const loaded of [false, true]) {
        // a loaded machine: a third of the probes 0-40 ms late, the rest 0-5 ms
        const random = seeded(baseMs + 1)
        const jitter = loaded ? () => random() < 0.3 ? random() * 40 : random() * 5 : undefined
        const r = simulatePaced(createBackgroundController(), { capacity, baseMs, queueMs: 300, seconds: 20, jitter })
        // the bench's window: 6 s after the start, for 12 s (measured before: 0.72-0.88 here, sawing between 0.8 and
        // 3.1 MB/s with 100-150 ms of queue at each top)
        const window = (xs: number[]): number[] => xs.slice(6000 / r.step, 18_000 / r.step)
        const what = `base ${baseMs} ms${loaded ? ', loaded' : ''}`
        expect(mean(window(r.used)), what).toBeGreaterThan(0.85)
        // the queue stays near the setpoint (24 ms): on average well under the 50 ms the issue allows, and above the
        // 60 ms target rarely (loaded at a 1 ms base: 0.90 used, 22 ms mean, at most 75 ms)
        const queue = window(r.queue)
        expect(mean(queue), what).toBeLessThan(BACKGROUND_TARGET_MS * BACKGROUND_SETPOINT_SHARE * 1.5)
        expect(queue.filter(x => x > BACKGROUND_TARGET_MS).length / queue.length, what).toBeLessThan(0.05)
      }
    }
  })

  it('with sender pacing, yields to a foreground flow that fills the queue and takes the link back when it ends', () => {
    const capacity = 20e6 / 8
    const fg = (t: number): number => t >= 10_000 && t < 20_000 ? capacity : 0
    const r = simulatePaced(createBackgroundController(), { capacity, baseMs: 20, queueMs: 300, seconds: 40, foreground: fg })
    const between = (a: number, b: number, xs: number[]): number => mean(xs.slice(a / r.step, b / r.step))
    expect(between(12_000, 20_000, r.used)).toBeLessThan(0.05)
    expect(between(30_000, 40_000, r.used)).toBeGreaterThan(0.8)
  })

  it('with sender pacing near the path rate, holds the rate at what arrives, less above the setpoint', () => {
    const setpoint = BACKGROUND_TARGET_MS * BACKGROUND_SETPOINT_SHARE
    const c = createBackgroundController({ startRate: 2_000_000, currentFilter: 1 })
    c.sample(0, 20, { delivered: 2_000_000, allowed: 2_000_000 })
    c.sample(100, 20, { delivered: 2_000_000, allowed: 2_000_000 })
    const grown = c.rate
    expect(grown).toBeGreaterThan(2_000_000) // an empty queue, everything allowed arrived: slow start grows
    // a queue of its own above the setpoint: held under what arrives, by BACKGROUND_HOLD_GAIN per setpoint of excess
    c.sample(200, 20 + 1.5 * setpoint, { delivered: 2_400_000, allowed: 2_500_000 })
    expect(c.phase).toBe('avoidance')
    c.sample(300, 20 + 1.5 * setpoint, { delivered: 2_400_000, allowed: 2_500_000 })
    expect(c.rate).toBeCloseTo(2_400_000 * (1 - 0.5 * BACKGROUND_HOLD_GAIN), 0)
    // path- or application-limited (a fifth of what was allowed did not arrive) on an empty queue: not raised, and
    // not lowered either (a transfer between two requests builds no queue; held at what it used, it fell to the floor)
    const d = createBackgroundController({ startRate: 3_000_000, currentFilter: 1 })
    for (let t = 0; t <= 1000; t += 100) d.sample(t, 20, { delivered: 2_400_000, allowed: 3_000_000 })
    expect(d.rate).toBe(3_000_000)
    const e = createBackgroundController({ startRate: 3_000_000, currentFilter: 1 })
    for (let t = 0; t <= 1000; t += 100) e.sample(t, 20, { delivered: 0, allowed: 3_000_000 })
    expect(e.rate).toBe(3_000_000)
  })

  it('climbs back after a slowdown to what the path carried, without waiting for what arrives to follow', () => {
    const c = createBackgroundController({ startRate: 2_000_000, currentFilter: 1 })
    let t = 0
    // to avoidance: a queue above the setpoint ends slow start
    c.sample(t, 20, { delivered: 2_000_000, allowed: 2_000_000 })
    c.sample(t += 100, 60, { delivered: 2_000_000, allowed: 2_000_000 })
    expect(c.phase).toBe('avoidance')
    // the first slowdown comes two round trips after slow start
    c.sample(t += 200, 20, { delivered: 2_000_000, allowed: 2_000_000 })
    expect(c.phase).toBe('slowdown')
    expect(c.rate).toBe(BACKGROUND_MIN_RATE)
    while (c.phase === 'slowdown') c.sample(t += 100, 20, { delivered: 50_000, allowed: 50_000 })
    // what arrives is still low (the meter's window holds the slowdown): the climb does not wait for it
    let samples = 0
    while (c.phase === 'slow-start' && samples < 20) { c.sample(t += 100, 20, { delivered: 100_000, allowed: 100_000 }); samples++ }
    expect(samples).toBeLessThanOrEqual(8)
    expect(c.rate).toBe(2_000_000)
  })

  it('does not hold a transfer that does not use its rate at what it used (start-up, gaps between requests)', () => {
    // a busy agent's late probes read as 10 ms of queue while the transfer has not started yet
    const c = createBackgroundController({ startRate: 500_000, currentFilter: 1 })
    for (let t = 0; t <= 1000; t += 50) c.sample(t, t === 0 ? 1 : 11, { delivered: 5_000, allowed: 500_000 })
    expect(c.rate).toBe(500_000)
    // in avoidance too: a pause between requests is not a path that carries 5 kB/s
    const d = createBackgroundController({ startRate: 2_000_000, currentFilter: 1 })
    d.sample(0, 1, { delivered: 2_000_000, allowed: 2_000_000 })
    d.sample(50, 40, { delivered: 2_000_000, allowed: 2_000_000 }) // slow start ends at the setpoint
    expect(d.phase).toBe('avoidance')
    const before = d.rate
    // (before the slowdown two round trips after slow start)
    for (let t = 60; t <= 120; t += 10) d.sample(t, 11, { delivered: 5_000, allowed: 2_000_000 })
    expect(d.phase).toBe('avoidance')
    expect(d.rate).toBe(before)
  })

  it('ends a slowdown only once the queue has drained (or after a second), and climbs back from there', () => {
    const c = createBackgroundController({ startRate: 2_000_000, currentFilter: 1 })
    let t = 0
    c.sample(t, 20, { delivered: 2_000_000, allowed: 2_000_000 })
    c.sample(t += 100, 60, { delivered: 2_000_000, allowed: 2_000_000 }) // 40 ms: slow start ends
    c.sample(t += 200, 60, { delivered: 2_000_000, allowed: 2_000_000 })
    expect(c.phase).toBe('slowdown')
    // two round trips later the queue is still 40 ms: the slowdown goes on (a climb would stop at it, at the floor)
    c.sample(t += 200, 60, { delivered: 50_000, allowed: 50_000 })
    expect(c.phase).toBe('slowdown')
    c.sample(t += 100, 21, { delivered: 50_000, allowed: 50_000 }) // drained
    expect(c.phase).toBe('slow-start')
    for (let i = 0; i < 10 && c.phase === 'slow-start'; i++) c.sample(t += 100, 21, { delivered: 100_000, allowed: 100_000 })
    expect(c.rate).toBeGreaterThan(1_000_000)
    // a queue that does not drain is not ours: after a second the climb starts all the same
    const d = createBackgroundController({ startRate: 2_000_000, currentFilter: 1 })
    let u = 0
    d.sample(u, 20, { delivered: 2_000_000, allowed: 2_000_000 })
    d.sample(u += 100, 60, { delivered: 2_000_000, allowed: 2_000_000 })
    d.sample(u += 200, 60, { delivered: 2_000_000, allowed: 2_000_000 })
    while (d.phase === 'slowdown' && u < 5_000) d.sample(u += 100, 60, { delivered: 20_000, allowed: 20_000 })
    expect(u).toBeLessThanOrEqual(300 + 1_100)
  })

  it('with sender pacing, does not cut again on probes that started before the last cut could show', () => {
    // settled at the link (a 20 mbit bottleneck, the probe seeing no base delay, as through bench/background.ts's relay)
    const c = createBackgroundController()
    const settled = (t: number): boolean => t > 5_000 && c.phase === 'avoidance' && c.rate > 2_200_000
    const { end } = simulatePaced(c, { capacity: 2_380_000, baseMs: 0.5, queueMs: 300, seconds: 20, until: settled })
    expect(settled(end)).toBe(true)
    const before = c.rate
    // the probes bench/background.ts recorded at 40 ms RTT after an overshoot (trace, ms after the first: delay):
    // sequential handshakes, each showing the queue as it was when it started; the rate was cut to 1.02 MB/s at the
    // sixth, the queue peaked as that cut reached the path, and drained within 250 ms. The old controller cut at the
    // seventh and eighth too (to 0.26 MB/s), as the current-delay filter still held samples from before the cut
    const trace: Array<[number, number]> = [[0, 40.8], [70, 63.2], [160, 93.5], [280, 111.8], [390, 119.9], [520, 127], [660, 132.1],
      [780, 125.8], [840, 61.9], [860, 14], [900, 0.5], [950, 0.6], [1000, 0.5], [1050, 0.7]]
    let lowest = c.rate
    for (const [dt, delay] of trace) {
      c.sample(end + 50 + dt, delay + 0.5, { delivered: 2_380_000, allowed: 2_600_000 })
      lowest = Math.min(lowest, c.rate)
    }
    // one cut by a half (and the small ones before it at the target), not three
    expect(lowest).toBeGreaterThan(0.35 * before)
  })

  it('does not start a slowdown while the queue a cut left drains (it would climb back only to the cut rate), but after', () => {
    const c = createBackgroundController({ startRate: 2_000_000, currentFilter: 1 })
    const d = { delivered: 2_000_000, allowed: 2_000_000 }
    c.sample(0, 20, d)
    c.sample(100, 60, d) // 40 ms of queue: slow start ends, the first slowdown due two round trips later (220 ms)
    expect(c.phase).toBe('avoidance')
    c.sample(200, 100, d) // 80 ms: above the target, cut
    const cut = c.rate
    expect(cut).toBeLessThan(2_000_000)
    c.sample(250, 25, d) // the slowdown is due, but the cut's queue is draining
    expect(c.phase).toBe('avoidance')
    for (let t = 300; t <= 1_000 && c.phase === 'avoidance'; t += 50) c.sample(t, 21, d)
    expect(c.phase).toBe('slowdown')
  })

  it('with sender pacing, climbs back after a cut or a pause to at most a little above the rate the path carried', () => {
    const c = createBackgroundController({ startRate: 2_000_000, currentFilter: 1 })
    let t = 0
    const d = { delivered: 2_000_000, allowed: 2_000_000 }
    c.sample(t, 1, d)
    c.sample(t += 50, 41, d) // slow start ends
    c.sample(t += 50, 21, d) // a queue of its own under the target: the path carries 2 MB/s
    // the first slowdown and the climb back to the rate before it
    for (let i = 0; i < 100 && !(c.phase === 'avoidance' && t > 300); i++) c.sample(t += 50, 1, d)
    expect(c.phase).toBe('avoidance')
    // the queue has drained (a cut, a pause): nothing shows the path's rate until a queue builds, a few hundred ms late
    let highest = 0
    for (let i = 0; i < 20; i++) { c.sample(t += 50, 1, d); highest = Math.max(highest, c.rate) }
    expect(highest).toBeLessThanOrEqual(2_000_000 * (1 + BACKGROUND_HOLD_GAIN) + 1)
    // more arrives than that with no queue: it was not the path's rate, and the climb goes on
    for (let i = 0; i < 20; i++) c.sample(t += 50, 1, { delivered: 2_300_000, allowed: 2_300_000 })
    expect(c.rate).toBeGreaterThan(2_300_000 * (1 + BACKGROUND_HOLD_GAIN))
  })

  it('slows the ramp-up where the base delay is short (LEDBAT++ gain)', () => {
    expect(ledbatGain(60, 300)).toBe(1)
    expect(ledbatGain(60, 40)).toBe(1 / 3)
    expect(ledbatGain(60, 1)).toBe(1 / 16)
  })
})
