/**
 * Promise: `kill -9` of an agent sync at any moment loses nothing: the restart
 * completes with a b3sum-correct image, and the killed run plus the restart
 * fetch at most KILL_OVERHEAD x a clean run's WAN bytes (+ KILL_SLACK_BYTES for
 * the second login and manifest). Seeded trials: TRIMSWARM_TRIALS (default 3
 * here; the 20 with TRIMSWARM_TRIALS=20), TRIMSWARM_SEED.
 * The kill moment is a seeded share of the clean run's bytes seen on the link.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { b3sumFile, createPrng, type TempDir, type TestImage } from '../helpers/images.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { runAgent, spawnAgent, type TestCoordinator, startPublishedTestImage } from '../peer-agent/harness.ts'
import { recordCounts } from './counts.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { DEFAULT_MAX_BLOCKS } from '../../chunker/constants.ts'

const TRIALS = Number(process.env.TRIMSWARM_TRIALS ?? 3)
const SEED = Number(process.env.TRIMSWARM_SEED ?? 8)
/** The bound: at most 5 % more WAN bytes than a clean run. */
const KILL_OVERHEAD = 1.05
/**
 * Fixed cost of a restart, bytes: chunks are verified whole, so the chunk
 * being received at the kill is lost (at most DEFAULT_MAX_BLOCKS blocks, the
 * chunking the test image is published with; less on the wire, compressed), plus a second login and signed manifest. Seen on the
 * 8 MiB test image: 100-128 KB.
 */
const KILL_SLACK_BYTES = DEFAULT_MAX_BLOCKS * BLOCK_SIZE + 32 * 1024

let tmp: TempDir
let coord: TestCoordinator
let img: TestImage
let imgSum: string
let cleanBytes = 0
const trials: Array<{ trial: number, killAt: number, bytesAtKill: number, total: number, ratio: number }> = []

beforeAll(async () => {
  ;({ tmp, img, imgSum, coord } = await startPublishedTestImage('trimswarm-agent-kill-', { name: 'img', sizeMiB: 8, seed: 31 }))
})

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
  const worst = trials.reduce((m, t) => Math.max(m, t.ratio), 0)
  await recordCounts('agent-kill', {
    promise: 'kill -9 of an agent sync at a random moment: the restart completes with a correct image, <= 5 % extra WAN bytes',
    trials: trials.length,
    faultsInjected: trials.length,
    seed: SEED,
    cleanBytes,
    worstBytesRatio: Math.round(worst * 10000) / 10000,
    bytesLost: 0,
    perTrial: trials
  })
})

function args (url: string, data: string, out: string): string[] {
  return ['sync', 'ws@v1', '--coordinator', url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--retries', '2', '--retry-delay', '50', '--no-index', '--no-lan']
}

describe(`agent kill -9 at seeded random moments (${TRIALS} trials, seed ${SEED})`, () => {
  it('clean reference run', async () => {
    const meter = await startByteMeter(coord.url)
    const out = join(tmp.path, 'clean', 'ws.img')
    const r = await runAgent(args(meter.url, join(tmp.path, 'clean-data'), out))
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(imgSum)
    cleanBytes = meter.bytes
    await meter.close()
    expect(cleanBytes).toBeGreaterThan(500_000)
  })

  const prng = createPrng(SEED)
  for (let trial = 1; trial <= TRIALS; trial++) {
    // 2 % .. 97 % of the way through the transfer (drawn up front, so a trial's moment does not depend on the others)
    const killAt = prng.int(2, 97) / 100
    it(`trial ${trial}: killed at ${Math.round(killAt * 100)} % of the transfer, the restart completes`, async () => {
      expect(cleanBytes).toBeGreaterThan(0)
      // about 2 s for a whole transfer, so the kill lands mid-stream
      const meter = await startByteMeter(coord.url, { rate: Math.round(cleanBytes / 2) })
      const data = join(tmp.path, `t${trial}`)
      const out = join(tmp.path, `t${trial}-out`, 'ws.img')
      const { child, done } = spawnAgent(args(meter.url, data, out))
      const deadline = Date.now() + 20_000
      while (meter.bytes < cleanBytes * killAt && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
      child.kill('SIGKILL')
      const killed = await done
      const bytesAtKill = meter.bytes
      if (killed.signal === 'SIGKILL') {
        // killed before it finished: nothing may be at the output yet
        expect(await stat(out).catch(() => null)).toBeNull()
      } else {
        expect(killed.code, killed.stderr).toBe(0)
      }
      const r = await runAgent(args(meter.url, data, out))
      expect(r.code, r.stderr).toBe(0)
      expect(await b3sumFile(out)).toBe(imgSum)
      const total = meter.bytes
      await meter.close()
      trials.push({ trial, killAt, bytesAtKill, total, ratio: total / cleanBytes })
      expect(total).toBeLessThanOrEqual(cleanBytes * KILL_OVERHEAD + KILL_SLACK_BYTES)
    })
  }
})
