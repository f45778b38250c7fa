/**
 * Background mode yields, on a real link, as root (skipped with a reason
 * otherwise): bench/background.ts's measurement, short: three namespaces with a
 * router shaping 20 mbit with a 300 ms queue, a coordinator in hq, `agent sync
 * --background` in the branch; alone the sync uses the link, beside a plain
 * HTTP download it gives the link back.
 */
import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { measureBackground } from '../../bench/background.ts'

const isRoot = process.getuid?.() === 0
const hasTools = ['ip', 'tc', 'curl', 'ping', 'sysctl'].every(t => {
  try { execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }); return true } catch { return false }
})
const why = !isRoot ? 'not root: network namespaces need root' : 'ip, tc, curl, ping or sysctl missing (scripts/install-deps.sh)'

describe.skipIf(!isRoot || !hasTools)('background mode on a shaped link (namespaces)', () => {
  it('uses an idle link and yields it to a foreground download', async () => {
    const r = await measureBackground({ rate: 20e6 / 8, queueMs: 300, rttMs: 0, seconds: 10, sizeMib: 60, modes: ['background'], cc: 'cubic', warmupMs: 5_000 })
    const bg = r.modes[0]
    // alone it takes a real part of the link, over ten times its 16 KiB/s floor (0.007 of it), after a ramp-up
    // that LEDBAT++ slows on purpose; short windows vary (0.13 on a quiet CI-sized machine, 0.15-0.6 loaded), the
    // figures over longer windows, 0.36-0.61, are in docs/BENCHMARKS.md
    expect(bg.syncAloneFraction).toBeGreaterThan(0.08)
    // beside a download it leaves most of the link to it (the sync's own share beside it is not compared with its
    // share alone: in short windows the "alone" one may still be ramping up, seen 0.155 alone and 0.19 beside while the
    // download kept over 0.7 of its speed). 10 s windows: the download's own ramp-up and the sync's first cut take
    // about a second, which in 5 s windows alone cost a CI run 0.69 (12 s windows measure 0.89-0.99)
    expect(bg.downloadShare).toBeGreaterThan(0.7)
  }, 120_000)
})

describe.skipIf(isRoot && hasTools)('background mode on a shaped link (skipped)', () => {
  it.skip(`skipped: ${why}`, () => {})
})
