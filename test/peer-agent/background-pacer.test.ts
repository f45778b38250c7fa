import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { createBackgroundController } from '../../peer-agent/background-controller.ts'
import { createBackgroundPacer, createHealthProbe } from '../../peer-agent/background-pacer.ts'

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
    const slow = await pacedRead(async (n) => { await pacer.take(n) }, 1)
    expect(slow).toBeLessThan(pacer.rate * 2 + 64 * 1024)
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

  it('times GET /healthz at the coordinator URL', async () => {
    const paths: string[] = []
    const server = createServer((req, res) => { paths.push(req.url ?? ''); res.end('{"ok":true}') })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    stops.push(async () => { await new Promise(resolve => server.close(resolve)) })
    const probe = createHealthProbe(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)
    await probe({})
    expect(paths).toEqual(['/healthz'])
    server.close()
    server.closeAllConnections()
    await expect(probe({})).rejects.toThrow()
  })
})
