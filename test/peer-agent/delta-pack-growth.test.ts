/**
 * Reading a delta pack file while it is downloaded (delta-pack-growth.ts): only
 * bytes the download says are written are read, the reader waits for more,
 * ends with the download, fails with it, and starts over when the download
 * starts the file afresh.
 */
import { appendFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createPackGrowth, readGrowing, waitForBytes } from '../../peer-agent/delta-pack-growth.ts'
import { PackRestartedError } from '../../peer-agent/errors.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
beforeEach(async () => { tmp = await tempDir('trimswarm-pack-growth-') })
afterEach(async () => { await tmp.cleanup() })

const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

describe('delta pack growth', () => {
  it('reads only what is written, waits for more, and ends with the download', async () => {
    const path = join(tmp.path, 'pack')
    // bytes of an earlier run's pack beyond what this download vouches for are not read
    writeFileSync(path, bytes(10, 9))
    const growth = createPackGrowth()
    const reader = readGrowing(path, 2, growth, growth.generation, 4)
    const first = reader.next()
    let settled = false
    void first.then(() => { settled = true })
    await new Promise(resolve => setImmediate(resolve))
    expect(settled).toBe(false) // nothing vouched for yet
    growth.start(10)
    expect([...(await first).value as Uint8Array]).toEqual([9, 9, 9, 9]) // from offset 2, pieces of at most 4
    expect([...(await reader.next()).value as Uint8Array]).toEqual([9, 9, 9, 9])
    const third = reader.next() // waits: all that is written was read
    appendFileSync(path, bytes(3, 7))
    growth.grew(3)
    expect([...(await third).value as Uint8Array]).toEqual([7, 7, 7])
    const end = reader.next()
    growth.finish()
    expect((await end).done).toBe(true)
  })

  it('a download that fails ends the reader with its error', async () => {
    const path = join(tmp.path, 'pack')
    writeFileSync(path, bytes(4, 1))
    const growth = createPackGrowth()
    growth.start(4)
    const reader = readGrowing(path, 0, growth, growth.generation, 1024)
    expect(((await reader.next()).value as Uint8Array).length).toBe(4)
    const next = reader.next()
    growth.fail(new Error('connection reset'))
    await expect(next).rejects.toThrow('connection reset')
  })

  it('a download that starts the file afresh makes the reader start over', async () => {
    const path = join(tmp.path, 'pack')
    writeFileSync(path, bytes(8, 1))
    const growth = createPackGrowth()
    growth.start(8)
    const generation = growth.generation
    const reader = readGrowing(path, 0, growth, generation, 4)
    await reader.next()
    growth.start(0) // a 200 where a resume was asked: the file is truncated and written again
    truncateSync(path, 0)
    expect(growth.generation).toBe(generation + 1)
    await expect(reader.next()).rejects.toBeInstanceOf(PackRestartedError)
  })

  it('a wait for bytes returns once they are written, or the download ends or starts over', async () => {
    const growth = createPackGrowth()
    const waiting = waitForBytes(growth, 100)
    growth.start(0)
    growth.grew(60)
    let settled = false
    void waiting.then(() => { settled = true })
    await new Promise(resolve => setImmediate(resolve))
    expect(settled).toBe(false)
    growth.grew(40)
    await waiting
    const restarted = waitForBytes(growth, 1000)
    growth.start(0)
    await restarted
    const ended = waitForBytes(growth, 1000)
    growth.finish()
    await ended
  })
})
