/**
 * Every decoder of protocol/ with the error classes its doc comment promises,
 * and a fast-check property per decoder: for any input it returns a value or
 * throws one of those classes, never anything else (TypeError, RangeError, a
 * plain Error from a dependency). Inputs mix random bytes or values with
 * mutations (bit flips, truncation, splices) of valid encodings, so the fuzz
 * reaches past the first length check. Shared by test/reliability (small
 * counts) and `npm run bench -- fuzz` (>= 100,000 cases per decoder).
 */
import fc from 'fast-check'
import { checkBlockBatch } from '../../protocol/block-batch.ts'
import {
  decodeMessage, encodeMessageBytes, MalformedMessageError, MessageTooLargeError, type ExchangeMessage
} from '../../protocol/block-exchange.ts'
import { parseChunkCid } from '../../protocol/block-id.ts'
import { CAPABILITY_FORMAT, decodeCapability, encodeCapability, InvalidCapabilityError } from '../../protocol/capability.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../../protocol/constants.ts'
import { decodeDeltaPackHeader, encodeDeltaPackHeader } from '../../protocol/delta-pack.ts'
import { InvalidCidError, InvalidManifestError, InvalidSignatureError, TooLargeError, ValidationError } from '../../protocol/errors.ts'
import { createManifest, decodeManifest, encodeManifest } from '../../protocol/manifest.ts'
import { decodeManifestAnswer, decodeManifestRequest, encodeManifestAnswer, encodeManifestRequest, readFrameLength } from '../../protocol/manifest-exchange.ts'
import { parseRate } from '../../protocol/rate.ts'
import { decodeEnvelope } from '../../protocol/signed-manifest.ts'
import { decodeVersionPointer, encodeVersionPointer, InvalidVersionPointerError, VERSION_POINTER_FORMAT } from '../../protocol/version-pointer.ts'
import * as api from '../../protocol/api.ts'
import * as apiAdmin from '../../protocol/api-admin.ts'
import * as swarmApi from '../../protocol/swarm-api.ts'
import type { Schema } from '../../protocol/schema.ts'
import * as dagCbor from '@ipld/dag-cbor'

/** One decoder under fuzz. */
export interface FuzzTarget {
  name: string
  /** The error classes the decoder documents. */
  allowed: Array<abstract new (...args: any[]) => Error>
  input: fc.Arbitrary<unknown>
  decode: (input: unknown) => unknown
}

/** Counts of one decoder's run. */
export interface FuzzResult {
  name: string
  cases: number
  decoded: number
  rejected: number
  /** A counterexample when the decoder threw something it does not document (the run stops there). */
  failure?: string
}

const seq = (n: number, seed: number): Uint8Array => { let x = seed | 1; return Uint8Array.from({ length: n }, () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x & 0xff }) }

/** Random bytes or a mutation of one of the valid encodings. */
function bytesAround (valid: Uint8Array[], maxLength = 2048): fc.Arbitrary<Uint8Array> {
  // Fresh copies every time: no input may share memory with the valid encodings or with another input.
  // (dag-cbor encodes to a Buffer in Node, whose slice() is a view: copy with new Uint8Array.)
  const base = fc.constantFrom(...valid.map(v => new Uint8Array(v))).map(b => new Uint8Array(b))
  return fc.oneof(
    base,
    fc.uint8Array({ maxLength }),
    fc.tuple(base, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 })).map(([b, flips]) => {
      const out = new Uint8Array(b)
      for (const [pos, bit] of flips) if (out.length > 0) out[pos % out.length] ^= 1 << bit
      return out
    }),
    fc.tuple(base, fc.nat()).map(([b, cut]) => b.slice(0, cut % (b.length + 1))),
    fc.tuple(base, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([b, pos, ins]) => {
      const p = pos % (b.length + 1)
      const out = new Uint8Array(b.length + ins.length)
      out.set(b.subarray(0, p)); out.set(ins, p); out.set(b.subarray(p), p + ins.length)
      return out
    }),
    fc.tuple(base, fc.nat(), fc.nat(), fc.nat()).map(([b, s, e, v]) => {
      // overwrite a run with one byte value (0x00, 0xff, ...): length fields become huge or zero
      const out = new Uint8Array(b)
      const start = s % (out.length + 1)
      out.fill([0x00, 0xff, 0x7f, 0x80, 0x1b][v % 5], start, Math.min(out.length, start + 1 + e % 9))
      return out
    })
  )
}

function validManifests (): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const blocks of [[1], [4, 16, 2], [64, 3, 5, 7]]) {
    let off = 0
    let n = 0
    const chunks = blocks.map((b, i) => { const c = { offset: off + BLOCK_SIZE * i, length: b * BLOCK_SIZE, digest: seq(32, b + i) }; off = c.offset + c.length; n += b; return c })
    out.push(encodeManifest(createManifest({ name: 'desk', version: `v${blocks.length}`, size: off + BLOCK_SIZE, chunking: { minBlocks: 4, avgBlocks: 16, maxBlocks: 64 }, chunks, blockPrefixes: seq(n * BLOCK_PREFIX_BYTES, n) })))
  }
  return out
}

function validMessages (): Uint8Array[] {
  const msgs: ExchangeMessage[] = [
    { type: 'hello', capability: seq(100, 1) },
    { type: 'have', active: true, count: 20, bitmap: seq(3, 2) },
    { type: 'have-update', indices: [1, 5, 9] },
    { type: 'want', indices: [0, 1000, 4095] },
    { type: 'cancel', indices: [7] },
    { type: 'dont-have', indices: [2, 3] },
    { type: 'block', index: 3, bytes: seq(BLOCK_SIZE, 3) },
    { type: 'error', code: 3, message: 'no' }
  ]
  // decodeMessage takes a frame body: encodeMessageBytes gives length-prefixed frames, so strip the prefix.
  return msgs.map(m => {
    const framed = encodeMessageBytes(m)
    let p = 0
    while ((framed[p] & 0x80) !== 0) p++
    return framed.subarray(p + 1)
  })
}

/** A frame body without its varint length prefix. */
function unframe (framed: Uint8Array): Uint8Array {
  let p = 0
  while ((framed[p] & 0x80) !== 0) p++
  return framed.subarray(p + 1)
}

/** Every exported API schema (name -> schema) of protocol/api*.ts and swarm-api.ts. */
export function apiSchemas (): Array<[string, Schema<unknown>]> {
  const out: Array<[string, Schema<unknown>]> = []
  for (const [mod, ns] of [['api', api], ['api-admin', apiAdmin], ['swarm-api', swarmApi]] as const) {
    for (const [k, v] of Object.entries(ns)) {
      if (v != null && typeof (v as Schema<unknown>).parse === 'function' && typeof (v as Schema<unknown>).json === 'object') out.push([`${mod}.${k}`, v as Schema<unknown>])
    }
  }
  return out
}

/** Values shaped like what the schema wants: its own property names with arbitrary JSON, or any JSON at all. */
function valuesFor (schema: Schema<unknown>): fc.Arbitrary<unknown> {
  const props = Object.keys((schema.json.properties as Record<string, unknown> | undefined) ?? {})
  const anyJson = fc.jsonValue({ maxDepth: 4 })
  if (props.length === 0) return fc.oneof(anyJson, fc.anything({ maxDepth: 3 }))
  const shaped = fc.dictionary(fc.constantFrom(...props, '__proto__', 'constructor', 'x'), fc.oneof(anyJson, fc.string(), fc.integer(), fc.double(), fc.constant(null)), { maxKeys: props.length + 2 })
  return fc.oneof(anyJson, shaped, fc.anything({ maxDepth: 3 }))
}

/** The decoders and what they may throw. */
export function fuzzTargets (): FuzzTarget[] {
  const manifests = validManifests()
  const envelope = dagCbor.encode({ format: 1, alg: 'Ed25519', manifest: manifests[1], signature: seq(64, 9) })
  const cap = encodeCapability({ image: 'desk', version: '2024.1', peer: '12D3KooWDd2b9SqVsbDrCm2EiaoFGT5xSHwPEfhVgzLwffCG3taE', expires: 1_800_000_600 })
  const capEnvelope = dagCbor.encode({ format: CAPABILITY_FORMAT, alg: 'Ed25519', capability: cap, signature: seq(64, 7) })
  const pointer = encodeVersionPointer({ image: 'desk', version: '2024.2', manifestCid: 'bafyr4idvmfgu6b2x7777rk4xnvki7sfcfhw3rbxrgjkjbvuvoqswb2u6iy', seq: 42, time: 1_800_000_000 })
  const pointerEnvelope = dagCbor.encode({ format: VERSION_POINTER_FORMAT, alg: 'Ed25519', pointer, signature: seq(64, 5) })
  const packHeader = encodeDeltaPackHeader({ name: 'desk', version: '2', from: '1', ranges: [[0, 3], [10, 1], [100, 64]], blocks: 68 })
  const targets: FuzzTarget[] = [
    {
      name: 'manifest',
      allowed: [InvalidManifestError],
      input: bytesAround(manifests, 4096),
      decode: (b) => {
        const m = decodeManifest(b as Uint8Array)
        // A decoded manifest is canonical: re-encoding gives the same bytes (else two encodings, one CID each).
        const again = encodeManifest(m)
        if (Buffer.compare(again, b as Uint8Array) !== 0) throw new Error('decoded manifest does not re-encode to the same bytes')
        return m
      }
    },
    // decodeEnvelope's comment names only InvalidManifestError, but an unknown `alg` is an InvalidSignatureError (deliberate: reported to the lead).
    { name: 'signed manifest envelope', allowed: [InvalidManifestError, InvalidSignatureError], input: bytesAround([envelope], 4096), decode: (b) => decodeEnvelope(b as Uint8Array) },
    { name: 'delta-pack header', allowed: [InvalidManifestError], input: bytesAround([packHeader]), decode: (b) => decodeDeltaPackHeader(b as Uint8Array) },
    { name: 'capability', allowed: [InvalidCapabilityError], input: fc.oneof(bytesAround([capEnvelope]), bytesAround([cap])), decode: (b) => decodeCapability(b as Uint8Array) },
    { name: 'version pointer', allowed: [InvalidVersionPointerError], input: fc.oneof(bytesAround([pointerEnvelope]), bytesAround([pointer])), decode: (b) => decodeVersionPointer(b as Uint8Array) },
    { name: 'block-exchange message', allowed: [MalformedMessageError, MessageTooLargeError], input: bytesAround(validMessages(), 5000), decode: (b) => decodeMessage(b as Uint8Array) },
    { name: 'manifest-exchange request', allowed: [MalformedMessageError, MessageTooLargeError], input: bytesAround([unframe(encodeManifestRequest(capEnvelope))]), decode: (b) => decodeManifestRequest(b as Uint8Array) },
    {
      name: 'manifest-exchange answer',
      allowed: [MalformedMessageError, MessageTooLargeError],
      input: bytesAround([unframe(encodeManifestAnswer({ status: 'manifest', envelope })), unframe(encodeManifestAnswer({ status: 'fetching' })), unframe(encodeManifestAnswer({ status: 'refused', reason: 'capability refused' }))], 4096),
      decode: (b) => decodeManifestAnswer(b as Uint8Array)
    },
    { name: 'manifest-exchange frame length', allowed: [MalformedMessageError, MessageTooLargeError], input: bytesAround([encodeManifestRequest(capEnvelope).subarray(0, 9)]), decode: (b) => readFrameLength(b as Uint8Array, 4096) },
    {
      name: 'chunk CID text',
      allowed: [InvalidCidError],
      input: fc.oneof(fc.string({ maxLength: 120 }), fc.constantFrom('bafkr4iddvfa7hdzaleb64ihzmw5ipx5tbllhtcjdour5o6ckydswuxhkp4', 'bafyr4idvmfgu6b2x7777rk4xnvki7sfcfhw3rbxrgjkjbvuvoqswb2u6iy').chain(s => fc.tuple(fc.nat(), fc.string({ maxLength: 3 })).map(([p, ins]) => s.slice(0, p % s.length) + ins + s.slice(p % s.length + 1)))),
      decode: (s) => parseChunkCid(s as string)
    },
    { name: 'rate text', allowed: [ValidationError], input: fc.oneof(fc.string({ maxLength: 40 }), fc.tuple(fc.double(), fc.constantFrom('', 'mbit', 'MB/s', 'kbps', 'gbit', 'x')).map(([n, u]) => `${n}${u}`)), decode: (s) => parseRate(s as string) },
    {
      name: 'block batch ranges',
      allowed: [ValidationError, TooLargeError],
      input: fc.tuple(fc.array(fc.tuple(fc.oneof(fc.nat({ max: 2000 }), fc.integer(), fc.double(), fc.constant(Number.MAX_SAFE_INTEGER)), fc.oneof(fc.nat({ max: 64 }), fc.integer(), fc.double())), { maxLength: 50 }), fc.oneof(fc.nat({ max: 5000 }), fc.nat())),
      decode: (v) => { const [ranges, n] = v as [Array<[number, number]>, number]; return checkBlockBatch(ranges, n) }
    }
  ]
  for (const [name, schema] of apiSchemas()) {
    targets.push({ name: `schema ${name}`, allowed: [ValidationError], input: valuesFor(schema), decode: (v) => schema.parse(v) })
  }
  return targets
}

/** Runs one decoder's property for `numRuns` cases (seeded); stops at the first undocumented error. */
export function fuzzOne (t: FuzzTarget, numRuns: number, seed: number): FuzzResult {
  let decoded = 0
  let rejected = 0
  const details = fc.check(fc.property(t.input, (input) => {
    try {
      t.decode(input)
      decoded++
    } catch (err) {
      if (t.allowed.some(cls => err instanceof cls)) { rejected++; return }
      throw err
    }
  }), { numRuns, seed, endOnFailure: true })
  const result: FuzzResult = { name: t.name, cases: details.numRuns, decoded, rejected }
  if (details.failed) {
    const err = details.errorInstance as Error | undefined
    result.failure = `${err?.name ?? 'error'}: ${err?.message ?? String(details.errorInstance)} on ${JSON.stringify(details.counterexample, (_, v) => v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)?.slice(0, 400)}`
  }
  return result
}
