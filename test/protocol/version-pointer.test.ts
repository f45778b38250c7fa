import { describe, expect, it } from 'vitest'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPairSync, createPublicKey } from 'node:crypto'
import { InvalidSignatureError } from '../../protocol/errors.ts'
import { importPublicKey, signManifest } from '../../protocol/signed-manifest.ts'
import { decodeVersionPointer, encodeVersionPointer, InvalidVersionPointerError, openVersionPointer, signVersionPointer, type VersionPointer } from '../../protocol/version-pointer.ts'
import { downgradeOf, newestSeen } from '../../peer-agent/version-guard.ts'

async function keys (): Promise<{ priv: CryptoKey, pub: CryptoKey }> {
  const k = generateKeyPairSync('ed25519')
  const priv = await crypto.subtle.importKey('pkcs8', k.privateKey.export({ format: 'der', type: 'pkcs8' }), { name: 'Ed25519' }, false, ['sign'])
  const pub = await importPublicKey(new Uint8Array(Buffer.from(createPublicKey(k.privateKey).export({ format: 'jwk' }).x as string, 'base64url')))
  return { priv, pub }
}

const p: VersionPointer = { image: 'desk', version: 'v2', manifestCid: 'bafyr4idvmfgu6b2x7777rk4xnvki7sfcfhw3rbxrgjkjbvuvoqswb2u6iy', seq: 7, time: 1_800_000_000 }

describe('signed version pointer', () => {
  it('round-trips and verifies with the signing key only', async () => {
    const a = await keys()
    const b = await keys()
    const env = await signVersionPointer(p, a.priv)
    expect(await openVersionPointer(env, a.pub, 'desk')).toEqual(p)
    await expect(openVersionPointer(env, b.pub, 'desk')).rejects.toThrow(InvalidSignatureError)
    await expect(openVersionPointer(env, a.pub, 'other')).rejects.toThrow(InvalidSignatureError)
  })

  it('a changed field no longer verifies', async () => {
    const a = await keys()
    const { signature } = decodeVersionPointer(await signVersionPointer(p, a.priv))
    const tampered = dagCbor.encode({ format: 1, alg: 'Ed25519', pointer: encodeVersionPointer({ ...p, seq: 8 }), signature })
    await expect(openVersionPointer(tampered, a.pub, 'desk')).rejects.toThrow(/does not verify/)
  })

  it('a manifest signature never verifies as a pointer (context tag)', async () => {
    const a = await keys()
    const bytes = encodeVersionPointer(p)
    // sign the pointer bytes as if they were a manifest: decodeManifest refuses first, so build the envelope by hand
    await expect(signManifest(bytes, a.priv)).rejects.toThrow()
    const sig = new Uint8Array(await crypto.subtle.sign('Ed25519', a.priv, new Uint8Array([...new TextEncoder().encode('trimswarm manifest v1\n'), ...bytes])))
    await expect(openVersionPointer(dagCbor.encode({ format: 1, alg: 'Ed25519', pointer: bytes, signature: sig }), a.pub, 'desk')).rejects.toThrow(InvalidSignatureError)
  })

  it('rejects extra fields, bad names, a zero sequence and oversized input', () => {
    const env = (inner: unknown): Uint8Array => dagCbor.encode({ format: 1, alg: 'Ed25519', pointer: dagCbor.encode(inner), signature: new Uint8Array(64) })
    expect(() => decodeVersionPointer(env({ ...p, extra: 1 }))).toThrow(InvalidVersionPointerError)
    expect(() => decodeVersionPointer(env({ ...p, version: '../x' }))).toThrow(InvalidVersionPointerError)
    expect(() => decodeVersionPointer(env({ ...p, seq: 0 }))).toThrow(InvalidVersionPointerError)
    expect(() => decodeVersionPointer(new Uint8Array(2000))).toThrow(/over the limit of 1024/)
  })
})

describe('version guard', () => {
  it('follows a newer pointer, refuses an older one, and never calls staying a downgrade', () => {
    const seen = { version: 'v2', seq: 7, time: 1_800_000_000 }
    expect(downgradeOf({ ...p, version: 'v3', seq: 9 }, seen, { version: 'v2', seq: 7 })).toBeUndefined()
    expect(downgradeOf({ ...p, version: 'v1', seq: 3 }, seen, { version: 'v2', seq: 7 })).toMatch(/older than v2 \(published #7.*desk@v1/)
    // installed explicitly (no sequence known), but v2 was seen as latest
    expect(downgradeOf({ ...p, version: 'v1', seq: 3 }, seen, { version: 'v1' })).toBeUndefined()
    expect(downgradeOf({ ...p, version: 'v0', seq: 2 }, seen, { version: 'v1' })).toMatch(/refusing/)
    // nothing seen, nothing installed: any signed latest
    expect(downgradeOf({ ...p, seq: 1 }, undefined, undefined)).toBeUndefined()
    expect(newestSeen({ ...p, seq: 3 }, seen)).toBe(seen)
    expect(newestSeen({ ...p, seq: 9 }, seen)).toEqual({ version: 'v2', seq: 9, time: p.time })
  })
})
