import { describe, expect, it } from 'vitest'
import { createPace, createPaceRegistry, pacedStream } from '../../coordinator/pace.ts'
import { PACE_SLICE_BYTES } from '../../coordinator/constants.ts'
import { clampPaceRate, PACE_MAX_RATE, PACE_MIN_RATE, parsePaceHeaders } from '../../protocol/pace.ts'
import { ValidationError } from '../../protocol/errors.ts'

function streamOf (pieces: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0
  return new ReadableStream({ pull (c) { if (i < pieces.length) c.enqueue(pieces[i++]); else c.close() } }, { highWaterMark: 0 })
}

async function readAll (s: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const p of s) out.push(p)
  return out
}

describe('pace headers (the client\'s word)', () => {
  it('clamps the rate to sane bounds and refuses malformed headers with a ValidationError', () => {
    expect(parsePaceHeaders(undefined, undefined)).toBeUndefined()
    expect(parsePaceHeaders('A'.repeat(22), '2500000')).toEqual({ session: 'A'.repeat(22), rate: 2_500_000 })
    expect(parsePaceHeaders('A'.repeat(22), '0')?.rate).toBe(PACE_MIN_RATE)
    expect(parsePaceHeaders('A'.repeat(22), '999999999999')?.rate).toBe(PACE_MAX_RATE)
    expect(clampPaceRate(1)).toBe(PACE_MIN_RATE)
    for (const [session, rate] of [['A'.repeat(22), undefined], [undefined, '100'], ['short', '100'], ['A'.repeat(22), '-5'], ['A'.repeat(22), '1e9'], ['A'.repeat(22), '1'.repeat(40)], ['A'.repeat(22), '12.5'], ['A/B'.repeat(8), '100']]) {
      expect(() => parsePaceHeaders(session, rate)).toThrow(ValidationError)
    }
  })
})

describe('pace registry', () => {
  it('shares one pace per owner and session, takes the newest rate, and keeps owners apart', () => {
    const r = createPaceRegistry()
    const a = r.pace('machine:a', 'S'.repeat(22), 100_000)
    expect(r.pace('machine:a', 'S'.repeat(22), 200_000)).toBe(a)
    expect(a.rate).toBe(200_000)
    // the same session id under another principal is another session: nobody changes someone else's pace
    const b = r.pace('machine:b', 'S'.repeat(22), 50_000)
    expect(b).not.toBe(a)
    expect(a.rate).toBe(200_000)
    expect(r.size).toBe(2)
  })

  it('holds a bounded number of sessions per owner and of owners, and forgets idle ones', () => {
    let now = 0
    const r = createPaceRegistry({ now: () => now, maxOwners: 3, maxSessionsPerOwner: 2, idleMs: 1_000 })
    for (let i = 0; i < 10; i++) r.pace('machine:flood', `session-${String(i).padStart(10, '0')}`, 100_000)
    expect(r.size).toBe(2)
    for (let i = 0; i < 10; i++) r.pace(`machine:${i}`, 'S'.repeat(22), 100_000)
    expect(r.size).toBe(3)
    now = 2_000
    r.pace('machine:late', 'S'.repeat(22), 100_000)
    expect(r.size).toBe(1)
  })
})

describe('paced stream', () => {
  it('hands the bytes on unchanged, in slices, at the pace\'s rate', async () => {
    const data = new Uint8Array(6 * PACE_SLICE_BYTES + 123).map((_, i) => i & 0xff)
    const rate = 200 * 1024
    const t0 = performance.now()
    const parts = await readAll(pacedStream(streamOf([data.subarray(0, 100_000), data.subarray(100_000)]), createPace(rate)))
    const ms = performance.now() - t0
    expect(Buffer.concat(parts)).toEqual(Buffer.from(data))
    expect(Math.max(...parts.map(p => p.length))).toBeLessThanOrEqual(PACE_SLICE_BYTES)
    // the bucket starts empty and holds at most one slice: all but that slice wait for the rate
    expect(ms).toBeGreaterThan((data.length - PACE_SLICE_BYTES) / rate * 1000 * 0.9)
  })

  it('follows a rate changed while it runs, and a cancel reaches the source', async () => {
    const pace = createPace(PACE_MIN_RATE)
    let cancelled = false
    const src = new ReadableStream<Uint8Array>({ pull (c) { c.enqueue(new Uint8Array(PACE_SLICE_BYTES)) }, cancel () { cancelled = true } }, { highWaterMark: 0 })
    const reader = pacedStream(src, pace).getReader()
    await reader.read()
    // at 16 KiB/s each further slice would take a second; at 16 MiB/s, 20 take a few ms
    pace.setRate(16 * 1024 * 1024)
    const t0 = performance.now()
    for (let i = 0; i < 20; i++) await reader.read()
    expect(performance.now() - t0).toBeLessThan(900)
    await reader.cancel()
    expect(cancelled).toBe(true)
  })

  it('a slice waiting out its debt at a low rate goes as soon as the rate rises', async () => {
    // the agent's periodic slowdown drops its rate to the floor for a round trip or two: a slice priced then
    // waited a second at 16 KiB/s whatever came next, and every stream of the session with it (measured: no byte
    // arrived for 0.5-1 s after each slowdown, bench/background.ts)
    const pace = createPace(PACE_MIN_RATE)
    const src = new ReadableStream<Uint8Array>({ pull (c) { c.enqueue(new Uint8Array(PACE_SLICE_BYTES)) } }, { highWaterMark: 0 })
    const reader = pacedStream(src, pace).getReader()
    const t0 = performance.now()
    const first = reader.read()
    setTimeout(() => { pace.setRate(16 * 1024 * 1024) }, 50)
    await first
    expect(performance.now() - t0).toBeLessThan(500)
    await reader.cancel()
  })
})
