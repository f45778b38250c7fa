/** coordinator/build-queue.ts: one job at a time, no job twice, stop aborts, whenIdle waits. */
import { describe, expect, it } from 'vitest'
import { createBuildQueue } from '../../coordinator/build-queue.ts'

describe('createBuildQueue', () => {
  it('runs jobs one at a time in order, queues a job once, and whenIdle resolves after the last', async () => {
    const ran: string[] = []
    let inFlight = 0
    let most = 0
    const q = createBuildQueue<string>({
      key: j => j,
      run: async (j) => { inFlight++; most = Math.max(most, inFlight); await new Promise(resolve => setTimeout(resolve, 5)); ran.push(j); inFlight-- },
      onError: () => {}
    })
    q.enqueue('a')
    q.enqueue('b')
    q.enqueue('b')
    expect(q.pending()).toBe(2)
    q.start()
    q.enqueue('c')
    await q.whenIdle()
    expect(ran).toEqual(['a', 'b', 'c'])
    expect(most).toBe(1)
    expect(q.pending()).toBe(0)
  })

  it('stop aborts the running job (not reported as a failure) and drops the rest; failures are reported', async () => {
    const errors: string[] = []
    const q = createBuildQueue<string>({
      key: j => j,
      run: async (j, signal) => {
        if (j === 'bad') throw new Error('broken')
        await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))))
      },
      onError: (j, err) => errors.push(`${j}: ${err.message}`)
    })
    q.start()
    q.enqueue('bad')
    q.enqueue('slow')
    q.enqueue('never')
    await new Promise(resolve => setTimeout(resolve, 20))
    await q.stop()
    expect(errors).toEqual(['bad: broken'])
    expect(q.pending()).toBe(0)
    await q.whenIdle()
  })
})
