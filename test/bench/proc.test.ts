import { describe, expect, it } from 'vitest'
import { cpuSeconds, cpuTimes } from '../../bench/lib/proc.ts'

describe('bench/lib/proc', () => {
  it('cpuTimes splits a process\'s CPU into user and kernel time; cpuSeconds is their sum', async () => {
    const before = await cpuTimes(process.pid)
    const end = performance.now() + 300
    let x = 0
    while (performance.now() < end) x += Math.sqrt(x + 1)
    expect(x).toBeGreaterThan(0)
    const after = await cpuTimes(process.pid)
    // 300 ms of arithmetic is user time (USER_HZ ticks of 10 ms; the machine may lend us less than the whole core)
    expect(after.user - before.user).toBeGreaterThanOrEqual(0.05)
    expect(after.system).toBeGreaterThanOrEqual(before.system)
    const sum = await cpuSeconds(process.pid)
    expect(sum).toBeGreaterThanOrEqual(after.user + after.system)
    expect(sum).toBeLessThan(after.user + after.system + 0.5)
  })

  it('a process that is not there is an error, not zeros', async () => {
    await expect(cpuTimes(2 ** 22 + 7)).rejects.toThrow(/ENOENT/)
  })
})
