import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  CapabilityMismatchError, decodeCapability, encodeCapability, ExpiredCapabilityError, InvalidCapabilityError,
  MAX_CAPABILITY_BYTES, signCapability, verifyCapability
} from '../../protocol/capability.ts'
import { InvalidSignatureError } from '../../protocol/errors.ts'
import { importPublicKey, openSignedManifest } from '../../protocol/signed-manifest.ts'

async function keys (): Promise<{ privateKey: CryptoKey, publicKey: CryptoKey }> {
  const pair = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
  return { privateKey: pair.privateKey, publicKey: await importPublicKey(new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey))) }
}

const peer = '12D3KooWDd2b9SqVsbDrCm2EiaoFGT5xSHwPEfhVgzLwffCG3taE'
const now = 1_800_000_000
const cap = { image: 'desk', version: '2024.1', peer, expires: now + 600 }

describe('capability', () => {
  it('signs and verifies offline, bound to the peer, the image version and the expiry', async () => {
    const k = await keys()
    const bytes = await signCapability(cap, k.privateKey)
    expect(bytes.length).toBeLessThan(MAX_CAPABILITY_BYTES)
    expect(await verifyCapability(bytes, k.publicKey, { peer, image: 'desk', version: '2024.1', now })).toEqual(cap)
    await expect(verifyCapability(bytes, k.publicKey, { peer: '12D3KooWSHRgNBXDrs1qgpn48DoVrmunChEvxCuV3yGuX2m1Aeip', now })).rejects.toThrow(CapabilityMismatchError)
    await expect(verifyCapability(bytes, k.publicKey, { peer, image: 'desk', version: '2024.2', now })).rejects.toThrow(CapabilityMismatchError)
    await expect(verifyCapability(bytes, k.publicKey, { peer, now: now + 3600 })).rejects.toThrow(ExpiredCapabilityError)
    const other = await keys()
    await expect(verifyCapability(bytes, other.publicKey, { peer, now })).rejects.toThrow(InvalidSignatureError)
  })

  it('a flipped bit anywhere is refused', async () => {
    const k = await keys()
    const bytes = await signCapability(cap, k.privateKey)
    for (let i = 0; i < bytes.length; i++) {
      const bad = bytes.slice()
      bad[i] ^= 0x01
      await expect(verifyCapability(bad, k.publicKey, { peer, now }), `byte ${i}`).rejects.toThrow()
    }
  })

  it('is not a manifest signature and the other way round (domain separation)', async () => {
    const k = await keys()
    const bytes = await signCapability(cap, k.privateKey)
    const e = dagCbor.decode(bytes) as Record<string, unknown>
    const asManifest = dagCbor.encode({ format: 1, alg: 'Ed25519', manifest: e.capability, signature: e.signature })
    await expect(openSignedManifest(asManifest, k.publicKey)).rejects.toThrow()
  })

  it('rejects oversize, extra fields, bad names and non-canonical inner bytes', async () => {
    expect(() => decodeCapability(new Uint8Array(MAX_CAPABILITY_BYTES + 1))).toThrow(InvalidCapabilityError)
    expect(() => encodeCapability({ ...cap, image: '../etc' })).toThrow(InvalidCapabilityError)
    expect(() => encodeCapability({ ...cap, peer: 'a/b' })).toThrow(InvalidCapabilityError)
    const sig = new Uint8Array(64)
    const wrap = (capability: unknown, extra: Record<string, unknown> = {}): Uint8Array => dagCbor.encode({ format: 1, alg: 'Ed25519', capability, signature: sig, ...extra })
    expect(() => decodeCapability(wrap(dagCbor.encode({ ...cap, admin: true })))).toThrow(/exactly/)
    expect(() => decodeCapability(wrap(encodeCapability(cap), { note: 'x' }))).toThrow(/exactly/)
    expect(() => decodeCapability(wrap(dagCbor.encode({ ...cap, expires: -1 })))).toThrow(/expiry/)
    expect(() => decodeCapability(wrap('not bytes'))).toThrow(/types/)
    // CBOR map with a non-minimal integer: not canonical, refused.
    const canonical = encodeCapability(cap)
    expect(decodeCapability(wrap(canonical)).capability).toEqual(cap)
  })

  it('fuzz: random bytes never decode to something else than a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
      try {
        decodeCapability(bytes)
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidCapabilityError)
      }
    }), { numRuns: 2000 })
  })
})
