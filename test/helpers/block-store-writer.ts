/**
 * A child process for crash tests: puts chunks (seeds 5000.., 64 blocks each)
 * into a directory block store and prints each CID once stored, until killed.
 * Usage: node test/helpers/block-store-writer.ts STORE_DIR COUNT
 */
import { chunkCidOf } from '../../chunker/blake3.ts'
import { createDirectoryBlockStore } from '../../coordinator/directory-block-store.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { seededBytes } from './images.ts'

const [path, count] = process.argv.slice(2)
const store = await createDirectoryBlockStore({}, { path })
for (let i = 0; i < Number(count); i++) {
  const bytes = seededBytes(5000 + i, 64 * BLOCK_SIZE)
  const cid = chunkCidOf(bytes)
  await store.put(cid, bytes)
  process.stdout.write(`${cid.toString()}\n`)
}
