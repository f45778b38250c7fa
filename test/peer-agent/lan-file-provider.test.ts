/**
 * The chunk provider LAN sharing serves a partial or installed file through
 * (peer-agent/lan-sharing.ts): a chunk's exact bytes, and never memory that is not
 * the file's (its buffers are not zero-filled), so a file cut short refuses the chunk.
 */
import { open, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { PartialFileError } from '../../peer-agent/errors.ts'
import { fileProvider } from '../../peer-agent/lan-sharing.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'
import { block, manifestOf } from './sync-fixtures.ts'

let tmp: TempDir
beforeEach(async () => { tmp = await tempDir('trimswarm-file-provider-') })
afterEach(async () => { await tmp.cleanup() })

describe('LAN file provider', () => {
  it('reads a chunk as written, and refuses one the file no longer holds whole', async () => {
    const manifest = manifestOf([[block(1), block(2)], [block(3)]])
    const image = new Uint8Array(manifest.size)
    for (const [c, blocks] of [[block(1), block(2)], [block(3)]].entries()) blocks.forEach((b, k) => image.set(b, manifest.chunks[c].offset + k * BLOCK_SIZE))
    const path = join(tmp.path, 'image')
    await writeFile(path, image)
    const fh = await open(path, 'r')
    try {
      const provider = fileProvider(manifest, fh, () => true)
      const last = manifest.chunks[1]
      expect(await provider.read(0)).toEqual(Buffer.from(image.subarray(0, manifest.chunks[0].offset + 2 * BLOCK_SIZE).subarray(manifest.chunks[0].offset)))
      expect(await provider.read(1)).toEqual(Buffer.from(image.subarray(last.offset, last.offset + BLOCK_SIZE)))
      await truncate(path, last.offset + BLOCK_SIZE / 2)
      await expect(provider.read(1)).rejects.toThrow(PartialFileError)
      await expect(provider.read(1)).rejects.toThrow(/chunk 1 ends past the end of the file \(2048 of 4096 bytes\)/)
    } finally {
      await fh.close()
    }
  })
})
