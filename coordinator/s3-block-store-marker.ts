/**
 * The note a coordinator with an S3 block store leaves in its data dir (which
 * bucket holds its chunks), kept apart from s3-block-store.ts so reading it
 * (coordinator fsck) does not load the S3 SDK.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { S3_BLOCK_STORE_MARKER_FILE } from './constants.ts'
import { writeFileAtomic } from '../utils/atomic-write.ts'

/** Where a data dir's chunks are, as recorded by recordS3BlockStore. */
export interface S3BlockStoreMarker {
  endpoint: string
  bucket: string
  keyPrefix: string
}

/** Records in the data dir that its chunks live in this bucket (see S3_BLOCK_STORE_MARKER_FILE). */
export async function recordS3BlockStore (dataDir: string, marker: S3BlockStoreMarker): Promise<void> {
  const file = join(dataDir, S3_BLOCK_STORE_MARKER_FILE)
  await writeFileAtomic(file, JSON.stringify(marker) + '\n', { mode: 0o600 })
}

/** The bucket a data dir's chunks live in, or undefined when they are in DATA/blocks. */
export async function readS3BlockStoreMarker (dataDir: string): Promise<S3BlockStoreMarker | undefined> {
  let text: string
  try {
    text = await readFile(join(dataDir, S3_BLOCK_STORE_MARKER_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    const m = JSON.parse(text)
    return { endpoint: String(m.endpoint), bucket: String(m.bucket), keyPrefix: String(m.keyPrefix) }
  } catch {
    // A damaged marker still means "not the directory store".
    return { endpoint: 'unknown', bucket: 'unknown', keyPrefix: 'unknown' }
  }
}
