/** The swarm node's libp2p identity, kept in the agent's data dir so its peer id survives restarts. */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { writeFileAtomic } from '../../utils/atomic-write.ts'
import { PRIVATE_FILE_MODE } from '../constants.ts'
import { mkdirPrivate } from '../private-files.ts'

/** Reads the protobuf-encoded private key at `file`, or creates an Ed25519 one there (mode 0600, atomic). */
export async function loadOrCreatePeerKey (file: string): Promise<Uint8Array> {
  try {
    const bytes = new Uint8Array(await readFile(file))
    privateKeyFromProtobuf(bytes) // refuse a damaged key file rather than silently changing identity
    return bytes
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot use the swarm key ${file}: ${(err as Error).message}`, { cause: err })
  }
  const bytes = privateKeyToProtobuf(await generateKeyPair('Ed25519'))
  await mkdirPrivate(dirname(file))
  await writeFileAtomic(file, bytes, { mode: PRIVATE_FILE_MODE })
  return bytes
}
