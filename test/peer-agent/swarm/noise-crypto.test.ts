import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { swarmNoiseCrypto } from '../../../peer-agent/swarm/noise-crypto.ts'

const flat = (b: Uint8Array | { subarray: () => Uint8Array }): Uint8Array => b instanceof Uint8Array ? b : b.subarray()

describe('the swarm\'s noise cipher (KeyObject per key, no copy of sealed messages)', () => {
  const k = randomBytes(32)
  const nonce = randomBytes(12)
  const ad = randomBytes(32)

  it('seals and opens exactly as noise\'s default, for small and large messages, arrays and lists', () => {
    for (const size of [0, 100, 1199, 1200, 65519]) {
      const text = randomBytes(size)
      const ours = flat(swarmNoiseCrypto.chaCha20Poly1305Encrypt(text, nonce, ad, k))
      const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(text, nonce, ad, k))
      expect(Buffer.compare(ours, theirs)).toBe(0)
      expect(Buffer.compare(flat(swarmNoiseCrypto.chaCha20Poly1305Decrypt(theirs, nonce, ad, k)), text)).toBe(0)
      const asList = new Uint8ArrayList(text.subarray(0, size >> 1), text.subarray(size >> 1))
      expect(Buffer.compare(flat(swarmNoiseCrypto.chaCha20Poly1305Encrypt(asList as any, nonce, ad, k)), theirs)).toBe(0)
      const sealedList = new Uint8ArrayList(theirs.subarray(0, 7), theirs.subarray(7))
      expect(Buffer.compare(flat(swarmNoiseCrypto.chaCha20Poly1305Decrypt(sealedList as any, nonce, ad, k)), text)).toBe(0)
    }
  })

  it('refuses a tampered message, a wrong key or wrong associated data', () => {
    const text = randomBytes(4096)
    const sealed = Buffer.from(flat(swarmNoiseCrypto.chaCha20Poly1305Encrypt(text, nonce, ad, k)))
    const tampered = Buffer.from(sealed)
    tampered[100] ^= 1
    expect(() => swarmNoiseCrypto.chaCha20Poly1305Decrypt(tampered, nonce, ad, k)).toThrow()
    expect(() => swarmNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, randomBytes(32))).toThrow()
    expect(() => swarmNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, randomBytes(32), k)).toThrow()
  })
})
