/**
 * scripts/scale-out-stack.sh across `down` and `up`, on the run's shared stack
 * (test/helpers/scale-out-stack.ts) taken exclusively: the restart stops RGW
 * and the OSD for seconds, so this file waits until no other file uses the
 * stack, and files that start meanwhile wait for it.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { createS3BlockStore } from '../../coordinator/s3-block-store.ts'
import { testChunk } from './block-store-compliance.ts'
import { sharedScaleOutStack, stackScript, type TestScaleOutStack } from '../helpers/scale-out-stack.ts'

let stack: TestScaleOutStack | undefined
afterAll(async () => { await stack?.stop() }, 120_000)

describe('the stack across `down` and `up`', () => {
  it('keeps the bucket\'s chunks (the OSD is BlueStore on a file, not memory)', async () => {
    stack = await sharedScaleOutStack('stack_restart', { exclusive: true })
    const s3 = stack.s3
    const keyPrefix = `${s3.keyPrefix!}test-${randomBytes(6).toString('hex')}/`
    const openStore = async (): ReturnType<typeof createS3BlockStore> => await createS3BlockStore({}, { ...s3, keyPrefix })
    const chunks = Array.from({ length: 3 }, (_, i) => testChunk(500 + i))
    const before = await openStore()
    for (const c of chunks) await before.put(c.cid, c.bytes)
    before.close()
    await stackScript(stack.dir, ['down', stack.dir])
    await stackScript(stack.dir, ['up', stack.dir])
    const after = await openStore()
    try {
      for (const c of chunks) expect(await after.get(c.cid, { verify: true })).toEqual(c.bytes)
      let listed = 0
      for await (const cid of after.list()) { listed++; await after.delete(cid) }
      expect(listed).toBe(chunks.length)
    } finally {
      after.close()
    }
  }, 900_000)
})
