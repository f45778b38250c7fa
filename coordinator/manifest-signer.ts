/** The coordinator's Ed25519 manifest signer, its key kept as PKCS8 PEM under the data dir. */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto'
import { join } from 'node:path'
import { signManifest } from '../protocol/signed-manifest.ts'
import { SIGNING_KEY_FILE } from './constants.ts'
import type { ManifestSigner } from './interface.ts'
import { loadOrCreateSecret } from './secret-files.ts'

/** Loads the signing key from `keyFile` (default in `dataDir`; the config's signingKeyFile), creating it (mode 0600) on first start. */
export async function createManifestSigner (dataDir: string, keyFile = join(dataDir, SIGNING_KEY_FILE)): Promise<ManifestSigner & { created: boolean }> {
  const { value: pem, created } = await loadOrCreateSecret(keyFile, () =>
    generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string)
  const keyObject = createPrivateKey(pem)
  if (keyObject.asymmetricKeyType !== 'ed25519') throw new Error(`${keyFile} is not an Ed25519 key`)
  const der = keyObject.export({ format: 'der', type: 'pkcs8' })
  const privateKey = await crypto.subtle.importKey('pkcs8', der, { name: 'Ed25519' }, false, ['sign'])
  const jwk = createPublicKey(keyObject).export({ format: 'jwk' })
  const publicKeyRaw = new Uint8Array(Buffer.from(jwk.x as string, 'base64url'))
  return {
    created,
    publicKeyRaw,
    privateKey,
    sign: async (manifestBytes) => await signManifest(manifestBytes, privateKey)
  }
}
