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
    // alone it takes a real part of the link: with sender-side pacing 0.75-0.82 of it in 12 s windows at 0-20 ms RTT
    // (docs/BENCHMARKS.md "background"), but the delay probes run in user space, so a loaded machine reads as a queue
    // (0.34-0.45 at a load average of 20-25 on 2 CPUs); 0.2 is above what receiver-side pacing got on a quiet
    // CI-sized machine in these windows (0.13) and far above the 16 KiB/s floor (0.007)
    expect(bg.syncAloneFraction).toBeGreaterThan(0.2)
    // it adds little queueing delay (a foreground sync adds 180-255 ms of the 300 ms queue; background +0 to +31 ms)
    expect(bg.addedDelayMs).toBeLessThan(100)
    // beside a download it leaves most of the link to it (the sync's own share beside it is not compared with its
    // share alone: in short windows the "alone" one may still be ramping up). 10 s windows: the download's own
    // ramp-up and the sync's first cut take about a second, which in 5 s windows alone cost a CI run 0.69 (12 s
    // windows measure 0.77-0.95)
    expect(bg.downloadShare).toBeGreaterThan(0.7)
    // 300 s: at a load average of 25 on 2 CPUs the setup (publishing 60 MiB) alone took over a minute and the test
    // ran past 120 s (79 s at a load of 20); a test timeout leaves its namespaces and processes behind
  }, 300_000)
})

describe.skipIf(isRoot && hasTools)('background mode on a shaped link (skipped)', () => {
  it.skip(`skipped: ${why}`, () => {})
})
