import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closeSync, openSync } from 'node:fs'
import { open, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { readFull, readFullSync } from '../../utils/read-full.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
let file: string
const data = seededBytes(5, 100_000)
beforeAll(async () => {
  tmp = await tempDir('trimswarm-readfull-')
  file = join(tmp.path, 'data')
  await writeFile(file, data)
})
afterAll(async () => { await tmp.cleanup() })

/** A FileHandle whose reads return at most `max` bytes at a time, like a slow network file system. */
function shortReads (fh: FileHandle, max: number): FileHandle & { calls: number } {
  const h = Object.create(fh) as FileHandle & { calls: number }
  h.calls = 0
  h.read = (async (buf: Uint8Array, offset: number, length: number, position: number) => {
    h.calls++
    return await fh.read(buf, offset, Math.min(length, max), position)
  }) as FileHandle['read']
  return h
}

describe('readFull', () => {
  it('keeps reading after short reads until the buffer is full', async () => {
    const fh = await open(file, 'r')
    try {
      const h = shortReads(fh, 1000)
      const buf = new Uint8Array(10_000)
      expect(await readFull(h, buf, 5000)).toBe(10_000)
      expect(buf).toEqual(data.subarray(5000, 15_000))
      expect(h.calls).toBe(10)
    } finally {
      await fh.close()
    }
  })

  it('returns fewer bytes only at end of file', async () => {
    const fh = await open(file, 'r')
    try {
      const buf = new Uint8Array(1000)
      expect(await readFull(shortReads(fh, 300), buf, data.length - 400)).toBe(400)
      expect(buf.subarray(0, 400)).toEqual(data.subarray(data.length - 400))
      expect(await readFull(fh, buf, data.length + 10)).toBe(0)
    } finally {
      await fh.close()
    }
  })
})

describe('readFullSync', () => {
  it('reads a range whole, and to end of file', () => {
    const fd = openSync(file, 'r')
    try {
      const buf = new Uint8Array(70_000)
      expect(readFullSync(fd, buf, 1)).toBe(70_000)
      expect(buf).toEqual(data.subarray(1, 70_001))
      expect(readFullSync(fd, buf, 60_000)).toBe(40_000)
      expect(buf.subarray(0, 40_000)).toEqual(data.subarray(60_000))
    } finally {
      closeSync(fd)
    }
  })
})
