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
    // alone it takes most of the link: 0.63-0.77 of it in 12 s windows at 0-40 ms RTT at load averages of 11-24 on
    // 2 CPUs (docs/BENCHMARKS.md "background"); before the rate was held at what arrives it sawed and measured
    // 0.34-0.82, as low as 0.35 at RTT 0 on a quiet machine. 0.45: above that, with room for a loaded machine
    expect(bg.syncAloneFraction).toBeGreaterThan(0.45)
    // it adds little queueing delay: the 50 ms at most (foreground adds 180-255 ms of the 300 ms queue;
    // background +0 to +2 ms median: it holds ~24 ms only while at the link's rate, and yields the rest)
    expect(bg.addedDelayMs).toBeLessThan(50)
    // beside a download it leaves most of the link to it (the sync's own share beside it is not compared with its
    // share alone: in short windows the "alone" one may still be ramping up). 10 s windows: the download's own
    // ramp-up and the sync's first cut take about a second, which in 5 s windows alone cost a CI run 0.69 (12 s
    // windows measure 0.77-0.95). The bound is 0.6, not the 0.8 (the bench's target): foreground mode leaves
    // the download 0.12-0.22, so 0.6 still tells yielding from competing, without failing CI on one slow second
    expect(bg.downloadShare).toBeGreaterThan(0.6)
    // 300 s: at a load average of 25 on 2 CPUs the setup (publishing 60 MiB) alone took over a minute and the test
    // ran past 120 s (79 s at a load of 20); a test timeout leaves its namespaces and processes behind
  }, 300_000)
})

describe.skipIf(isRoot && hasTools)('background mode on a shaped link (skipped)', () => {
  it.skip(`skipped: ${why}`, () => {})
})
