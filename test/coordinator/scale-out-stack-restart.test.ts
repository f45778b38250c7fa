/**
 * scripts/scale-out-stack.sh across `down` and `up`, on a stack of this
 * file's own (test/helpers/scale-out-stack.ts startTestScaleOutStack): the
 * restart stops RGW and the OSD for seconds, which would fail the requests of
 * every other test file on the run's shared stack.
 */
import { randomBytes } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createS3BlockStore } from '../../coordinator/s3-block-store.ts'
import { testChunk } from './block-store-compliance.ts'
import { startTestScaleOutStack, type TestScaleOutStack } from '../helpers/scale-out-stack.ts'

let stack: TestScaleOutStack
beforeAll(async () => { stack = await startTestScaleOutStack() }, 300_000)
afterAll(async () => { await stack?.stop() }, 120_000)

describe('the stack across `down` and `up`', () => {
  it('keeps the bucket\'s chunks (the OSD is BlueStore on a file, not memory)', async () => {
    const keyPrefix = `test-${randomBytes(6).toString('hex')}/`
    const openStore = async (): ReturnType<typeof createS3BlockStore> => await createS3BlockStore({}, { ...stack.s3, keyPrefix })
    const chunks = Array.from({ length: 3 }, (_, i) => testChunk(500 + i))
    const before = await openStore()
    for (const c of chunks) await before.put(c.cid, c.bytes)
    before.close()
    const script = new URL('../../scripts/scale-out-stack.sh', import.meta.url).pathname
    await promisify(execFile)(script, ['down', stack.dir], { timeout: 120_000 })
    await promisify(execFile)(script, ['up', stack.dir], { timeout: 300_000 })
    const after = await openStore()
    try {
      for (const c of chunks) expect(await after.get(c.cid, { verify: true })).toEqual(c.bytes)
      let listed = 0
      for await (const cid of after.list()) { listed++; await after.delete(cid) }
      expect(listed).toBe(chunks.length)
    } finally {
      after.close()
    }
  }, 300_000)
})
