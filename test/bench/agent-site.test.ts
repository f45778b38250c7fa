/**
 * `bench agent-site` (bench/agent-site.ts) end to end on a small image: agents of one site
 * on loopback, cold and with the image's own files indexed, every output checked by the
 * bench itself; and its flags.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { run, siteFlags } from '../../bench/agent-site.ts'
import { makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'

let tmp: TempDir
let image: TestImage
beforeAll(async () => {
  tmp = await tempDir('trimswarm-agent-site-')
  image = await makeTestImage(tmp.path, { sizeMiB: 8 })
})
afterAll(async () => { await tmp?.cleanup() })

/** Runs the bench, returning its exit code and what it printed. */
async function bench (args: string[]): Promise<{ code: number, out: string }> {
  const printed: string[] = []
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => { printed.push(String(chunk)); return true })
  try {
    return { code: await run(args), out: printed.join('') }
  } finally {
    spy.mockRestore()
  }
}

describe('bench agent-site', () => {
  it('checks its numbers', () => {
    expect(siteFlags({})).toEqual({ agents: 4, runs: 3, level: 3 })
    expect(() => siteFlags({ agents: '0' })).toThrow('--agents must be an integer from 1 to 16')
    expect(() => siteFlags({ agents: '17' })).toThrow('--agents must be an integer from 1 to 16')
    expect(() => siteFlags({ runs: '1.5' })).toThrow('--runs must be a positive integer')
    expect(() => siteFlags({ level: '23' })).toThrow('--level must be an integer from 1 to 22')
  })

  it('times agents of one site cold, then with the image\'s files indexed: each agent\'s CPU, every output verified', async () => {
    const work = join(tmp.path, 'work')
    const cold = await bench(['--agents', '2', '--runs', '1', '--image', image.path, '--work', work])
    expect(cold.code).toBe(0)
    expect(cold.out).toMatch(/2 agents, cold/)
    expect(cold.out).toMatch(/round 1, .*: all done [\d.]+ s, agents' CPU [\d.]+ s \([\d.]+, [\d.]+\), page faults [\d.]+k, coordinator [\d.]+ s, origin [\d.]+ MB/)
    expect(cold.out).toMatch(/agents' CPU summed, median [\d.]+ s .*; page faults summed, median [\d.]+k;/)
    // a node process touches thousands of fresh pages before it does any work: a figure read from /proc, not a zero
    expect(Number(/page faults ([\d.]+)k,/.exec(cold.out)?.[1])).toBeGreaterThan(1)
    // the same work folder: published already; the index of the image's own files gives most blocks locally
    const trim = await bench(['--agents', '2', '--runs', '1', '--image', image.path, '--work', work, '--index', image.tree])
    expect(trim.code).toBe(0)
    expect(trim.out).toMatch(/2 agents, with .* indexed/)
    const local = Number(/round 1, .*local ([\d.]+) MB/.exec(trim.out)?.[1])
    expect(local).toBeGreaterThan(0)
  }, 180_000)
})
