import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  bitmapHas, bitmapSet, CLAIM_GROUP_CHUNKS, claimOwner, claimScore, decodeMessage, encodeMessage, encodeMessageBytes,
  MalformedMessageError, MAX_BLOCK_BYTES, MAX_FRAME_BYTES, MAX_INDICES_PER_MESSAGE, MessageTooLargeError, MessageType,
  UnknownMessageTypeError, type ExchangeMessage
} from '../../protocol/block-exchange.ts'
import { createMessageDecoder } from '../../protocol/message-decoder.ts'
import { TooLargeError, ValidationError } from '../../protocol/errors.ts'

const block = new Uint8Array(8192).map((_, i) => i * 7)
const bitmap = new Uint8Array(2)
bitmapSet(bitmap, 0); bitmapSet(bitmap, 9)
const samples: ExchangeMessage[] = [
  { type: 'hello', capability: Uint8Array.from([1, 2, 3]) },
  { type: 'have', active: true, count: 10, bitmap },
  { type: 'have', active: false, count: 0, bitmap: new Uint8Array(0) },
  { type: 'have-update', indices: [5, 300, 70_000] },
  { type: 'want', indices: [0, 1, 2] },
  { type: 'cancel', indices: [2] },
  { type: 'dont-have', indices: [127, 128] },
  { type: 'block', index: 300, bytes: block },
  { type: 'error', code: 1, message: 'capability refused' }
]

describe('block-exchange messages', () => {
  it('round-trip through the frame decoder, whole and byte by byte', () => {
    const all = samples.map(encodeMessageBytes)
    const joined = new Uint8Array(all.reduce((n, b) => n + b.length, 0))
    let pos = 0
    for (const b of all) { joined.set(b, pos); pos += b.length }
    expect(createMessageDecoder().push(joined)).toEqual(samples)
    const d = createMessageDecoder()
    const out: ExchangeMessage[] = []
    for (const byte of joined) out.push(...d.push(Uint8Array.of(byte)))
    expect(out).toEqual(samples)
    expect(d.buffered).toBe(0)
  })

  it('has the documented byte layout', () => {
    expect(encodeMessageBytes({ type: 'want', indices: [1, 300] })).toEqual(Uint8Array.from([0x04, MessageType.WANT, 0x01, 0xac, 0x02]))
    expect(encodeMessageBytes({ type: 'have', active: true, count: 10, bitmap })).toEqual(Uint8Array.from([0x05, MessageType.HAVE, 0x01, 0x0a, 0x01, 0x02]))
    expect(encodeMessageBytes({ type: 'error', code: 4, message: 'hi' })).toEqual(Uint8Array.from([0x04, MessageType.ERROR, 0x04, 0x68, 0x69]))
    const parts = encodeMessage({ type: 'block', index: 2, bytes: block })
    expect(parts[1]).toBe(block) // chunk bytes are sent as they are, not copied
    expect(parts[0]).toEqual(Uint8Array.from([0x82, 0x40, MessageType.BLOCK, 0x02])) // 8194 = varint 0x82 0x40
    expect(bitmapHas(bitmap, 9) && !bitmapHas(bitmap, 8)).toBe(true)
  })

  it('rejects unknown types, oversize (as soon as the header is in) and malformed bodies with typed errors', () => {
    expect(() => decodeMessage(Uint8Array.of(0x7e))).toThrow(UnknownMessageTypeError)
    // A WANT declaring 1 MiB is refused from its first 4 bytes, before the body arrives.
    expect(() => createMessageDecoder().push(Uint8Array.from([0x80, 0x80, 0x40, MessageType.WANT]))).toThrow(MessageTooLargeError)
    expect(() => createMessageDecoder().push(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(MessageTooLargeError)
    expect(new MessageTooLargeError('x')).toBeInstanceOf(TooLargeError)
    expect(new UnknownMessageTypeError('x')).toBeInstanceOf(ValidationError)
    const bad: Array<[string, number[]]> = [
      ['empty frame', [0x00]],
      ['non-minimal length', [0x80, 0x00]],
      ['truncated varint in WANT', [0x02, MessageType.WANT, 0x80]],
      ['WANT with no index', [0x01, MessageType.WANT]],
      ['BLOCK not a block multiple', [0x04, MessageType.BLOCK, 0x00, 0x01, 0x02]],
      ['HAVE with stray bits', [0x04, MessageType.HAVE, 0x00, 0x03, 0xff]],
      ['HAVE with unknown flag', [0x04, MessageType.HAVE, 0x80, 0x03, 0x01]],
      ['HAVE bitmap too long', [0x05, MessageType.HAVE, 0x00, 0x03, 0x01, 0x00]],
      ['ERROR not UTF-8', [0x03, MessageType.ERROR, 0x01, 0xff]],
      ['HELLO empty', [0x01, MessageType.HELLO]],
      ['index past the swarm limit', [0x06, MessageType.WANT, 0x80, 0x80, 0x80, 0x80, 0x01]]
    ]
    for (const [what, bytes] of bad) {
      expect(() => createMessageDecoder().push(Uint8Array.from(bytes)), what).toThrow(MalformedMessageError)
    }
    // A failed decoder stays failed.
    const d = createMessageDecoder()
    expect(() => d.push(Uint8Array.of(0x00))).toThrow()
    expect(() => d.push(encodeMessageBytes(samples[4]))).toThrow()
  })

  it('enforces limits when encoding too', () => {
    expect(() => encodeMessage({ type: 'want', indices: [] })).toThrow(MalformedMessageError)
    expect(() => encodeMessage({ type: 'want', indices: new Array(MAX_INDICES_PER_MESSAGE + 1).fill(1) })).toThrow(MalformedMessageError)
    expect(() => encodeMessage({ type: 'block', index: 0, bytes: new Uint8Array(MAX_BLOCK_BYTES + 4096) })).toThrow(MessageTooLargeError)
    expect(() => encodeMessage({ type: 'want', indices: [-1] })).toThrow(MalformedMessageError)
    expect(encodeMessageBytes({ type: 'block', index: 0, bytes: new Uint8Array(MAX_BLOCK_BYTES) }).length).toBeLessThanOrEqual(MAX_FRAME_BYTES + 5)
  })

  it('fuzz: any bytes give messages or a typed error, never anything else; valid messages survive any split', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 1, max: 64 }), (bytes, step) => {
      const d = createMessageDecoder()
      try {
        for (let i = 0; i < bytes.length; i += step) d.push(bytes.subarray(i, i + step))
      } catch (err) {
        expect(err instanceof MalformedMessageError || err instanceof MessageTooLargeError).toBe(true)
      }
    }), { numRuns: 3000 })
    const arbMsg: fc.Arbitrary<ExchangeMessage> = fc.oneof(
      fc.array(fc.nat({ max: 1 << 22 }), { minLength: 1, maxLength: 50 }).map(indices => ({ type: 'want' as const, indices })),
      fc.array(fc.nat({ max: 1 << 22 }), { minLength: 1, maxLength: 50 }).map(indices => ({ type: 'have-update' as const, indices })),
      fc.tuple(fc.nat({ max: 1000 }), fc.integer({ min: 1, max: 3 })).map(([index, blocks]) => ({ type: 'block' as const, index, bytes: new Uint8Array(blocks * 4096).fill(index & 0xff) })),
      fc.string({ maxLength: 100 }).map(message => ({ type: 'error' as const, code: 3, message }))
    )
    fc.assert(fc.property(fc.array(arbMsg, { maxLength: 8 }), fc.integer({ min: 1, max: 5000 }), (msgs, step) => {
      const joined = msgs.map(encodeMessageBytes).reduce((a, b) => { const c = new Uint8Array(a.length + b.length); c.set(a); c.set(b, a.length); return c }, new Uint8Array(0))
      const d = createMessageDecoder()
      const out: ExchangeMessage[] = []
      for (let i = 0; i < joined.length; i += step) out.push(...d.push(joined.subarray(i, i + step)))
      // Compare blocks by content digest-free summary: deep equality on 12 KiB typed arrays is slow in expect.
      const summary = (m: ExchangeMessage): unknown => m.type === 'block' ? { index: m.index, length: m.bytes.length, sum: m.bytes.reduce((a, b) => (a * 31 + b) >>> 0, 0) } : m
      expect(out.map(summary)).toEqual(msgs.map(summary))
    }), { numRuns: 300 })
  })

  it('blockParts: a BLOCK split across pieces comes as views of them, joined only when bytes is read; same checks', () => {
    const big = new Uint8Array(5 * 4096).map((_, i) => (i * 13) & 0xff)
    const wire = encodeMessageBytes({ type: 'block', index: 70_000, bytes: big })
    const pieces = [wire.slice(0, 1), wire.slice(1, 3), wire.slice(3, 9000), wire.slice(9000)]
    const d = createMessageDecoder({ blockParts: true })
    const out = pieces.flatMap(p => d.push(p))
    expect(out.length).toBe(1)
    const m = out[0]
    if (m.type !== 'block') throw new Error('not a block')
    expect(m.index).toBe(70_000)
    expect(m.parts?.length).toBe(2)
    // Views of the pushed pieces, not copies.
    expect(m.parts?.every((p, k) => p.buffer === pieces[k + 2].buffer)).toBe(true)
    expect(Buffer.concat(m.parts ?? [])).toEqual(Buffer.from(big))
    expect(m.bytes).toEqual(big)
    expect(d.buffered).toBe(0)
    // In one piece: no parts, bytes is a view.
    const whole = createMessageDecoder({ blockParts: true }).push(wire)[0]
    expect(whole.type === 'block' && whole.parts == null && whole.bytes.buffer === wire.buffer).toBe(true)
    // Malformed BLOCKs split across pieces fail as in the default decoder.
    const notMultiple = Uint8Array.from([0x05, MessageType.BLOCK, 0x00, 0x01, 0x02, 0x03])
    expect(() => { const b = createMessageDecoder({ blockParts: true }); b.push(notMultiple.subarray(0, 3)); b.push(notMultiple.subarray(3)) }).toThrow(MalformedMessageError)
    const badIndex = Uint8Array.from([0x0a, MessageType.BLOCK, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
    expect(() => { const b = createMessageDecoder({ blockParts: true }); b.push(badIndex.subarray(0, 4)); b.push(badIndex.subarray(4)) }).toThrow(MalformedMessageError)
    // Any split of any message list decodes to the same messages as the default decoder.
    const arbMsg: fc.Arbitrary<ExchangeMessage> = fc.oneof(
      fc.array(fc.nat({ max: 1 << 22 }), { minLength: 1, maxLength: 20 }).map(indices => ({ type: 'want' as const, indices })),
      fc.tuple(fc.nat({ max: 1 << 22 }), fc.integer({ min: 1, max: 3 })).map(([index, blocks]) => ({ type: 'block' as const, index, bytes: new Uint8Array(blocks * 4096).map((_, i) => (i + index) & 0xff) }))
    )
    fc.assert(fc.property(fc.array(arbMsg, { maxLength: 6 }), fc.integer({ min: 1, max: 9000 }), (msgs, step) => {
      const joined = Buffer.concat(msgs.map(encodeMessageBytes))
      const d = createMessageDecoder({ blockParts: true })
      const got: ExchangeMessage[] = []
      for (let i = 0; i < joined.length; i += step) got.push(...d.push(joined.subarray(i, i + step)))
      const summary = (m: ExchangeMessage): unknown => m.type === 'block'
        ? { index: m.index, sum: Buffer.concat(m.parts ?? [m.bytes]).reduce((a, b) => (a * 31 + b) >>> 0, 0), joined: m.bytes.reduce((a, b) => (a * 31 + b) >>> 0, 0) }
        : m
      const want = (m: ExchangeMessage): unknown => m.type === 'block' ? { index: m.index, sum: m.bytes.reduce((a, b) => (a * 31 + b) >>> 0, 0), joined: m.bytes.reduce((a, b) => (a * 31 + b) >>> 0, 0) } : m
      expect(got.map(summary)).toEqual(msgs.map(want))
    }), { numRuns: 100 })
  })

  it('claim rule: deterministic, spreads chunks evenly, moves only the departed peer\'s share', () => {
    const peers = ['12D3KooWA', '12D3KooWB', '12D3KooWC', '12D3KooWD']
    expect(claimScore(7, 'x')).toBe(claimScore(7, 'x'))
    const owners = new Map<string, number>()
    const before: string[] = []
    for (let i = 0; i < 4000; i++) {
      const o = claimOwner(i, peers) as string
      before.push(o)
      owners.set(o, (owners.get(o) ?? 0) + 1)
    }
    for (const p of peers) expect(owners.get(p)).toBeGreaterThan(450)
    expect(claimOwner(5, [...peers].reverse())).toBe(claimOwner(5, peers))
    // chunks of one claim group have one owner: each agent fetches runs of neighbouring chunks
    for (let i = 0; i < 4000; i++) expect(before[i]).toBe(before[i - (i % CLAIM_GROUP_CHUNKS)])
    expect(new Set(before).size).toBe(4)
    for (let i = 0; i < 4000; i++) {
      const after = claimOwner(i, peers.slice(0, 3))
      if (before[i] !== peers[3]) expect(after).toBe(before[i])
    }
  })
})
