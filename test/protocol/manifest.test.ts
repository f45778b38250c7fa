/**
 * Property tests of the manifest codec and the signed envelope
 * (protocol/manifest.ts, protocol/signed-manifest.ts): round trip, every
 * single-byte change of an envelope rejected, truncations rejected, and only
 * the canonical encoding accepted. TRIMSWARM_PROPERTY_RUNS raises the count.
 */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, MAX_CHUNK_BLOCKS } from '../../protocol/constants.ts'
import { InvalidManifestError, InvalidSignatureError, TrimswarmError } from '../../protocol/errors.ts'
import { createManifest, decodeManifest, encodeManifest, type Manifest } from '../../protocol/manifest.ts'
import { decodeEnvelope, openSignedManifest, signManifest } from '../../protocol/signed-manifest.ts'

const NUM_RUNS = Number(process.env.TRIMSWARM_PROPERTY_RUNS ?? 200)

const nameArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,20}$/).filter(s => s !== '.' && s !== '..')

/** Any valid manifest: chunks with gaps (zero runs), digests, prefixes. */
const manifestArb: fc.Arbitrary<Manifest> = fc.record({
  name: nameArb,
  version: nameArb,
  avgLog: fc.integer({ min: 0, max: 10 }),
  runs: fc.array(fc.record({ gap: fc.integer({ min: 0, max: 300 }), blocks: fc.integer({ min: 1, max: 70 }) }), { maxLength: 25 }),
  tail: fc.integer({ min: 0, max: 200 }),
  seed: fc.integer()
}).map(({ name, version, avgLog, runs, tail, seed }) => {
  const avg = 2 ** avgLog
  let end = 0
  let blocks = 0
  let x = seed | 1
  const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x & 0xff })
  const chunks = runs.map(r => {
    const offset = end + r.gap * BLOCK_SIZE
    end = offset + r.blocks * BLOCK_SIZE
    blocks += r.blocks
    return { offset, length: r.blocks * BLOCK_SIZE, digest: bytes(32) }
  })
  return createManifest({
    name,
    version,
    size: Math.max(end + tail * BLOCK_SIZE, BLOCK_SIZE),
    chunking: { minBlocks: Math.max(1, avg >> 2), avgBlocks: avg, maxBlocks: Math.min(MAX_CHUNK_BLOCKS, avg * 4) },
    chunks,
    blockPrefixes: bytes(blocks * BLOCK_PREFIX_BYTES)
  })
})

let keys: CryptoKeyPair
let otherKeys: CryptoKeyPair
beforeAll(async () => {
  keys = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
  otherKeys = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
})

describe('manifest codec', () => {
  it('round-trips: decode(encode(m)) equals m and re-encodes to the same bytes', () => {
    fc.assert(fc.property(manifestArb, m => {
      const bytes = encodeManifest(m)
      const back = decodeManifest(bytes)
      expect(back).toEqual(m)
      expect(Buffer.compare(encodeManifest(back), bytes)).toBe(0)
    }), { numRuns: NUM_RUNS })
  })

  it('rejects every truncation with InvalidManifestError', () => {
    fc.assert(fc.property(manifestArb, fc.double({ min: 0, max: 1, noNaN: true }), (m, at) => {
      const bytes = encodeManifest(m)
      const cut = Math.floor(at * (bytes.length - 1))
      expect(() => decodeManifest(bytes.subarray(0, cut))).toThrow(InvalidManifestError)
    }), { numRuns: NUM_RUNS })
  })

  it('rejects trailing bytes', () => {
    fc.assert(fc.property(manifestArb, fc.uint8Array({ minLength: 1, maxLength: 8 }), (m, extra) => {
      const bytes = encodeManifest(m)
      expect(() => decodeManifest(Buffer.concat([bytes, extra]))).toThrow(InvalidManifestError)
    }), { numRuns: NUM_RUNS })
  })

  it('a single-byte change of bare manifest bytes is rejected or changes the manifest (and so its CID)', () => {
    fc.assert(fc.property(manifestArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (m, i, flip) => {
      const bytes = encodeManifest(m)
      const changed = bytes.slice()
      changed[i % bytes.length] ^= flip
      let decoded: Manifest | undefined
      try {
        decoded = decodeManifest(changed)
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidManifestError)
        return
      }
      expect(decoded).not.toEqual(m)
    }), { numRuns: NUM_RUNS })
  })
})

describe('canonical form only', () => {
  // A minimal CBOR writer, independent of @ipld/dag-cbor, so non-canonical variants can be built.
  type Value = number | string | Uint8Array | Record<string, unknown>
  const head = (major: number, n: number, widen: number): number[] => {
    const sizes = [[24, 1], [25, 2], [26, 4], [27, 8]] as const
    let form = n < 24 ? -1 : n < 256 ? 0 : n < 65536 ? 1 : n < 2 ** 32 ? 2 : 3
    form = Math.min(3, form + widen)
    if (form < 0) return [(major << 5) | n]
    const [ai, len] = sizes[form]
    const out = [(major << 5) | ai]
    for (let k = len - 1; k >= 0; k--) out.push(Math.floor(n / 2 ** (8 * k)) & 0xff)
    return out
  }
  const enc = (v: Value, opts: { order: (keys: string[]) => string[], widen: (path: string) => number }, path = ''): number[] => {
    if (typeof v === 'number') return head(0, v, opts.widen(path))
    if (typeof v === 'string') { const b = new TextEncoder().encode(v); return [...head(3, b.length, 0), ...b] }
    if (v instanceof Uint8Array) return [...head(2, v.length, opts.widen(path + '#len')), ...v]
    const keys = opts.order(Object.keys(v))
    return [...head(5, keys.length, 0), ...keys.flatMap(k => [...enc(k, opts), ...enc(v[k] as Value, opts, `${path}/${k}`)])]
  }
  const canonicalOrder = (keys: string[]): string[] => [...keys].sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0))
  const fieldsOf = (m: Manifest): Record<string, Value> => {
    const layout: number[] = []
    let end = 0
    for (const c of m.chunks) {
      for (let v of [(c.offset - end) / BLOCK_SIZE, c.length / BLOCK_SIZE]) {
        while (v >= 0x80) { layout.push((v & 0x7f) | 0x80); v = Math.floor(v / 0x80) }
        layout.push(v)
      }
      end = c.offset + c.length
    }
    const digests = new Uint8Array(m.chunks.length * 32)
    m.chunks.forEach((c, i) => { digests.set(c.digest, i * 32) })
    return {
      format: 1, name: m.name, version: m.version, size: m.size, blockSize: m.blockSize,
      chunking: { min: m.chunking.minBlocks, avg: m.chunking.avgBlocks, max: m.chunking.maxBlocks },
      layout: Uint8Array.from(layout), chunks: digests, blocks: m.blockPrefixes
    }
  }

  it('the independent writer reproduces encodeManifest byte for byte (the layout in docs/PROTOCOL.md)', () => {
    fc.assert(fc.property(manifestArb, m => {
      const mine = Uint8Array.from(enc(fieldsOf(m), { order: canonicalOrder, widen: () => 0 }))
      expect(Buffer.compare(mine, encodeManifest(m))).toBe(0)
    }), { numRuns: NUM_RUNS })
  })

  it('rejects map keys in any other order', () => {
    fc.assert(fc.property(manifestArb, fc.integer({ min: 1 }), (m, seed) => {
      const order = (keys: string[]): string[] => {
        const sorted = canonicalOrder(keys)
        const k = 1 + (seed % (sorted.length - 1))
        return [...sorted.slice(k), ...sorted.slice(0, k)] // a rotation: never the canonical order
      }
      const bytes = Uint8Array.from(enc(fieldsOf(m), { order, widen: () => 0 }))
      expect(() => decodeManifest(bytes)).toThrow(InvalidManifestError)
    }), { numRuns: NUM_RUNS })
  })

  it('rejects an integer or length written in more bytes than needed', () => {
    const widenable = ['/format', '/size', '/blockSize', '/chunking/min', '/chunking/avg', '/chunking/max', '/layout#len', '/chunks#len', '/blocks#len']
    fc.assert(fc.property(manifestArb, fc.constantFrom(...widenable), fc.integer({ min: 1, max: 3 }), (m, which, by) => {
      const bytes = Uint8Array.from(enc(fieldsOf(m), { order: canonicalOrder, widen: p => p === which ? by : 0 }))
      expect(() => decodeManifest(bytes)).toThrow(InvalidManifestError)
    }), { numRuns: NUM_RUNS })
  })

  it('rejects a layout varint that is not minimal, and unknown fields', () => {
    const m = createManifest({
      name: 'a', version: '1', size: 10 * BLOCK_SIZE, chunking: { minBlocks: 1, avgBlocks: 4, maxBlocks: 8 },
      chunks: [{ offset: BLOCK_SIZE, length: 2 * BLOCK_SIZE, digest: new Uint8Array(32).fill(7) }], blockPrefixes: new Uint8Array(16)
    })
    const f = fieldsOf(m)
    expect(Buffer.compare(Uint8Array.from(enc(f, { order: canonicalOrder, widen: () => 0 })), encodeManifest(m))).toBe(0)
    const nonMinimal = { ...f, layout: Uint8Array.from([0x81, 0x00, 0x02]) } // gap 1 as two bytes
    expect(() => decodeManifest(Uint8Array.from(enc(nonMinimal, { order: canonicalOrder, widen: () => 0 })))).toThrow(/layout is corrupt: varint is not minimally encoded/)
    const extra = { ...f, note: 'x' }
    expect(() => decodeManifest(Uint8Array.from(enc(extra, { order: canonicalOrder, widen: () => 0 })))).toThrow(/manifest fields are/)
  })
})

describe('signed envelope', () => {
  it('opens what was signed, with the right key only', async () => {
    await fc.assert(fc.asyncProperty(manifestArb, async m => {
      const bytes = encodeManifest(m)
      const env = await signManifest(bytes, keys.privateKey)
      const opened = await openSignedManifest(env, keys.publicKey)
      expect(opened.manifest).toEqual(m)
      expect(Buffer.compare(opened.manifestBytes, bytes)).toBe(0)
      await expect(openSignedManifest(env, otherKeys.publicKey)).rejects.toThrow(InvalidSignatureError)
    }), { numRuns: Math.ceil(NUM_RUNS / 4) })
  })

  it('rejects any single-byte change', async () => {
    await fc.assert(fc.asyncProperty(manifestArb, fc.nat(), fc.integer({ min: 1, max: 255 }), async (m, i, flip) => {
      const env = await signManifest(encodeManifest(m), keys.privateKey)
      const changed = env.slice()
      changed[i % env.length] ^= flip
      const err = await openSignedManifest(changed, keys.publicKey).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(TrimswarmError)
      expect(err instanceof InvalidManifestError || err instanceof InvalidSignatureError).toBe(true)
    }), { numRuns: NUM_RUNS })
  })

  it('rejects every byte position changed, on one envelope', async () => {
    const m = fc.sample(manifestArb, { numRuns: 1, seed: 42 })[0]
    const env = await signManifest(encodeManifest(m), keys.privateKey)
    for (let i = 0; i < env.length; i++) {
      const changed = env.slice()
      changed[i] ^= 0x01
      await expect(openSignedManifest(changed, keys.publicKey), `byte ${i}`).rejects.toThrow(TrimswarmError)
    }
  })

  it('rejects truncations with InvalidManifestError', async () => {
    await fc.assert(fc.asyncProperty(manifestArb, fc.double({ min: 0, max: 1, noNaN: true }), async (m, at) => {
      const env = await signManifest(encodeManifest(m), keys.privateKey)
      const cut = env.subarray(0, Math.floor(at * (env.length - 1)))
      expect(() => decodeEnvelope(cut)).toThrow(InvalidManifestError)
      await expect(openSignedManifest(cut, keys.publicKey)).rejects.toThrow(InvalidManifestError)
    }), { numRuns: NUM_RUNS })
  })

  it('refuses to sign bytes that are not a valid manifest', async () => {
    await expect(signManifest(new Uint8Array([0xa0]), keys.privateKey)).rejects.toThrow(InvalidManifestError)
  })
})
