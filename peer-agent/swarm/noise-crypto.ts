/**
 * Noise's cipher for the LAN swarm: @chainsafe/libp2p-noise's own default (node:crypto's
 * ChaCha20-Poly1305 for messages of 1200 bytes and more, its WebAssembly one below), with two
 * costs of its node:crypto path removed: the key is imported once per session key (a KeyObject)
 * instead of once per 64 KiB message, and a sealed message is handed on as its two parts
 * (ciphertext, tag) instead of being copied into one buffer. Measured in docs/BENCHMARKS.md
 * "BitTorrent baseline (issue 21)".
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'

/** Noise's message types (its own uint8arraylist release; the lists are told apart by a registered symbol, not the class). */
type Sealed = ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>
type Bytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0]

const CHACHA = 'chacha20-poly1305'
const TAG_BYTES = 16
/** Below this, noise's default uses its WebAssembly cipher (faster for small messages): kept. */
const NODE_CIPHER_MIN_BYTES = 1200

// Noise keeps one key array per direction for a session's life: its KeyObject is made once.
const keyObjects = new WeakMap<Uint8Array, KeyObject>()
function keyObjectOf (k: Uint8Array): KeyObject {
  let key = keyObjects.get(k)
  if (key == null) { key = createSecretKey(k); keyObjects.set(k, key) }
  return key
}

function encrypt (plaintext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Sealed {
  if (plaintext.byteLength < NODE_CIPHER_MIN_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
  const cipher = createCipheriv(CHACHA, keyObjectOf(k), nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
  const out = new Uint8ArrayList()
  for (const part of plaintext instanceof Uint8Array ? [plaintext] : plaintext) out.append(cipher.update(part))
  const final = cipher.final()
  if (final.byteLength > 0) out.append(final)
  out.append(cipher.getAuthTag())
  return out as unknown as Sealed
}

function decrypt (ciphertext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array, dst?: Uint8Array): Sealed {
  if (ciphertext.byteLength < NODE_CIPHER_MIN_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
  const textLength = ciphertext.byteLength - TAG_BYTES
  const decipher = createDecipheriv(CHACHA, keyObjectOf(k), nonce, { authTagLength: TAG_BYTES })
  decipher.setAAD(ad, { plaintextLength: textLength })
  decipher.setAuthTag(ciphertext.subarray(textLength))
  const text = ciphertext instanceof Uint8Array ? ciphertext.subarray(0, textLength) : ciphertext.sublist(0, textLength)
  if (text instanceof Uint8Array) {
    const out = decipher.update(text)
    const final = decipher.final()
    return final.byteLength > 0 ? Buffer.concat([out, final]) : out
  }
  const out = new Uint8ArrayList()
  for (const part of text) out.append(decipher.update(part))
  const final = decipher.final()
  if (final.byteLength > 0) out.append(final)
  return out as unknown as Sealed
}

/** noise({ crypto: swarmNoiseCrypto }). */
export const swarmNoiseCrypto: ICryptoInterface = { ...defaultCrypto, chaCha20Poly1305Encrypt: encrypt, chaCha20Poly1305Decrypt: decrypt }
