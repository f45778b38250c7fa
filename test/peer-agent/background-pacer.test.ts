import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { createBackgroundController } from '../../peer-agent/background-controller.ts'
import { createBackgroundPacer, createConnectProbe, createDeliveryMeter, createUploadPacer } from '../../peer-agent/background-pacer.ts'
import { PACE_RATE_HEADER, PACE_SESSION_HEADER, PACE_SESSION_PATTERN } from '../../protocol/pace.ts'

/** Reads `seconds` of a paced transfer in 8 KiB pieces; returns bytes per second. */
async function pacedRead (take: (n: number) => Promise<void>, seconds: number): Promise<number> {
  const t0 = performance.now()
  let n = 0
  while (performance.now() - t0 < seconds * 1000) {
    await take(8 * 1024)
    n += 8 * 1024
  }
  return n / ((performance.now() - t0) / 1000)
}

const stops: Array<() => Promise<void>> = []
afterEach(async () => { for (const s of stops.splice(0)) await s() })

describe('delivery meter', () => {
  it('compares what arrived with what the rate allowed one round trip earlier', () => {
    // the rate doubles every 100 ms from 100 kB/s; bytes leave at the rate and arrive 80 ms later (a round trip)
    const meter = createDeliveryMeter(500)
    const lag = 80
    const rateAt = (t: number): number => 100_000 * 2 ** Math.floor(t / 100)
    for (let t = 0; t <= 1000; t += 100) meter.setRate(t, rateAt(t))
    let last: { delivered: number, allowed: number } | undefined
    let unlagged: { delivered: number, allowed: number } | undefined
    const twin = createDeliveryMeter(500)
    for (let t = 0; t <= 1000; t += 100) twin.setRate(t, rateAt(t))
    for (let t = 0; t <= 1000; t += 10) {
      if (t >= lag) { meter.add(rateAt(t - lag) * 0.01); twin.add(rateAt(t - lag) * 0.01) }
      if (t % 50 === 0) { last = meter.measure(t, lag); unlagged = twin.measure(t, 0) }
    }
    // a ramp-up whose bytes all arrive is not read as path-limited (measured 1.08: the 10 ms steps)
    expect(last!.delivered / last!.allowed).toBeGreaterThan(0.9)
    expect(last!.delivered / last!.allowed).toBeLessThan(1.15)
    // compared with the same span it would be (0.65): the new rate's bytes are still on their way
    expect(unlagged!.delivered / unlagged!.allowed).toBeLessThan(0.8)
  })

  it('caps the lag at one window (a probe that took seconds says nothing of when bytes were sent)', () => {
    const meter = createDeliveryMeter(500)
    for (let t = 0; t < 59_000; t += 10) { meter.setRate(t, 1000); meter.add(10) }
    meter.setRate(59_000, 2000)
    meter.measure(59_500, 0)
    const m = meter.measure(60_000, 10_000)!
    // the span 500 ms before the window, not 10 s before it
    expect(m.allowed).toBeCloseTo(2000, 0)
  })
})

describe('background pacer', () => {
  it('paces reads at the controller rate, and slows down when the probed delay rises', async () => {
    let delayMs = 20
    let probes = 0
    const pacer = createBackgroundPacer({ probe: async () => { probes++; await sleep(delayMs) } }, { probeIntervalMs: 20, maxRate: 4_000_000 })
    stops.push(pacer.stop)
    // an empty path: the rate ramps up
    await pacedRead(async (n) => { await pacer.take(n) }, 1.5)
    const ramped = pacer.rate
    expect(ramped).toBeGreaterThan(200_000)
    // a queue of 200 ms builds up: the rate falls, and reads follow it. Cuts come at most once per round trip and
    // not again while the queue drains (4 round trips of ~240 ms here), a quarter at most each: 5 s leave room for
    // 4-5 cuts (0.75^4 = 0.32); the test asks for half, so a loaded machine's late timers do not fail it (a CI
    // rehearsal measured 1.27 MB/s from 4 MB/s after 3 s)
    delayMs = 220
    await pacedRead(async (n) => { await pacer.take(n) }, 5)
    expect(pacer.rate).toBeLessThan(ramped / 2)
    // the reads follow the rate: at most what the higher of its values before and after the second allows (a cut
    // may still come within it: the controller cuts again only on probes that saw the last cut's effect)
    const before = pacer.rate
    const slow = await pacedRead(async (n) => { await pacer.take(n) }, 1)
    expect(slow).toBeLessThan(Math.max(before, pacer.rate) * 2 + 64 * 1024)
    expect(probes).toBeGreaterThan(10)
  })

  it('keeps probing while a read waits, and a rate that rises shortens the wait', async () => {
    const pacer = createBackgroundPacer({ probe: async () => { await sleep(5) } }, { probeIntervalMs: 20, idleMs: 200, controller: createBackgroundController({ startRate: 16 * 1024, maxRate: 4_000_000 }) })
    stops.push(pacer.stop)
    await pacer.take(16 * 1024) // the bucket's first 16 KiB
    const t0 = performance.now()
    // at the start rate this read waits 15 s; the empty path lets the rate ramp up meanwhile
    await pacer.take(256 * 1024)
    expect(performance.now() - t0).toBeLessThan(5_000)
    expect(pacer.rate).toBeGreaterThan(100_000)
  }, 20_000)

  it('halves the rate when a probe gets no answer in time', async () => {
    let hang = false
    const pacer = createBackgroundPacer({ probe: async ({ signal }) => { if (hang) await sleep(10_000, undefined, { signal }); else await sleep(5) } }, { probeIntervalMs: 20, probeTimeoutMs: 100, maxRate: 4_000_000 })
    stops.push(pacer.stop)
    await pacedRead(async (n) => { await pacer.take(n) }, 0.5)
    const before = pacer.rate
    hang = true
    await pacedRead(async (n) => { await pacer.take(n) }, 0.35)
    expect(pacer.rate).toBeLessThanOrEqual(before / 2)
  })

  it('stops probing once the transfer is idle, and never exceeds the cap', async () => {
    let probes = 0
    const pacer = createBackgroundPacer({ probe: async () => { probes++; await sleep(5) } }, { probeIntervalMs: 20, idleMs: 200, maxRate: 256 * 1024 })
    stops.push(pacer.stop)
    const rate = await pacedRead(async (n) => { await pacer.take(n) }, 1.5)
    expect(rate).toBeLessThan(256 * 1024 * 1.25)
    await sleep(400)
    const after = probes
    await sleep(400)
    expect(probes).toBe(after)
  })

  it('times a TCP handshake with the coordinator, and fails when nothing listens', async () => {
    let accepted = 0
    const server = createNetServer((socket) => { accepted++; socket.destroy() })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    stops.push(async () => { await new Promise(resolve => server.close(resolve)) })
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    const probe = createConnectProbe(url)
    await probe({})
    await probe({})
    await sleep(50)
    expect(accepted).toBe(2)
    await new Promise(resolve => server.close(resolve))
    await expect(probe({})).rejects.toThrow()
  })

  it('with a coordinator that paces: names the session and rate on requests, tells it each new rate, and reads without holding back', async () => {
    const updates: Array<{ session: string, rate: number }> = []
    const pacer = createBackgroundPacer({
      probe: async () => { await sleep(5) },
      paceUpdate: async (u) => { updates.push(u); return u.rate }
    }, { probeIntervalMs: 20, controller: createBackgroundController({ startRate: 64 * 1024, maxRate: 100_000_000 }) })
    stops.push(pacer.stop)
    expect(pacer.requestHeaders()).toEqual({ [PACE_SESSION_HEADER]: expect.stringMatching(PACE_SESSION_PATTERN), [PACE_RATE_HEADER]: String(64 * 1024) })
    await pacer.take(1024)
    for (let i = 0; i < 50 && !pacer.senderPaced; i++) await sleep(20)
    expect(pacer.senderPaced).toBe(true)
    // 4 MiB at a 64 KiB/s start rate would take a minute if reads were paced
    const t0 = performance.now()
    for (let i = 0; i < 64; i++) await pacer.take(64 * 1024)
    expect(performance.now() - t0).toBeLessThan(2_000)
    const session = pacer.requestHeaders()[PACE_SESSION_HEADER]
    expect(updates.length).toBeGreaterThan(0)
    expect(updates.every(u => u.session === session)).toBe(true)
  })

  it('paces reads itself when the coordinator has no pacing (an older one), and stops naming a session', async () => {
    let asked = 0
    const pacer = createBackgroundPacer({
      probe: async () => { await sleep(5) },
      paceUpdate: async () => { asked++; return undefined }
    }, { probeIntervalMs: 20, controller: createBackgroundController({ startRate: 64 * 1024, maxRate: 64 * 1024 }) })
    stops.push(pacer.stop)
    await pacer.take(1024)
    for (let i = 0; i < 50 && asked === 0; i++) await sleep(20)
    await sleep(100)
    expect(asked).toBe(1)
    expect(pacer.senderPaced).toBe(false)
    expect(pacer.requestHeaders()).toEqual({})
    const rate = await pacedRead(async (n) => { await pacer.take(n) }, 1)
    expect(rate).toBeLessThan(64 * 1024 * 1.5)
  })

  it('with sender pacing, --wan-limit still holds reads to the cap', async () => {
    const pacer = createBackgroundPacer({ probe: async () => { await sleep(5) }, paceUpdate: async (u) => u.rate }, { probeIntervalMs: 20, maxRate: 256 * 1024 })
    stops.push(pacer.stop)
    await pacer.take(1024)
    for (let i = 0; i < 50 && !pacer.senderPaced; i++) await sleep(20)
    expect(pacer.senderPaced).toBe(true)
    const rate = await pacedRead(async (n) => { await pacer.take(n) }, 1.5)
    expect(rate).toBeLessThan(256 * 1024 * 1.25)
  })

describe('background pacer of LAN uploads', () => {
  it('pings the peer the last bytes went to, paces the sends, and slows down when that round trip grows', async () => {
    const pinged: string[] = []
    let delayMs = 2
    const pacer = createUploadPacer({ ping: async (peer) => { pinged.push(peer); await sleep(delayMs) } }, { probeIntervalMs: 20, maxRate: 4_000_000 })
    stops.push(pacer.stop)
    await pacedRead(async (n) => { await pacer.take(n, { peer: 'peer-a' }) }, 0.5)
    await pacedRead(async (n) => { await pacer.take(n, { peer: 'peer-b' }) }, 1)
    expect(pinged).toContain('peer-a')
    expect(pinged.at(-1)).toBe('peer-b')
    const ramped = pacer.rate
    expect(ramped).toBeGreaterThan(200_000)
    // the sends queue up somewhere on the way to peer-b: 200 ms more round trip
    delayMs = 202
    const slow = await pacedRead(async (n) => { await pacer.take(n, { peer: 'peer-b' }) }, 5)
    expect(pacer.rate).toBeLessThan(ramped / 2)
    expect(slow).toBeLessThan(ramped)
  }, 20_000)
})
})
