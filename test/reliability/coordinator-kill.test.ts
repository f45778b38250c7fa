/**
 * Promise: `kill -9` of the coordinator process while `trimswarm publish`
 * runs leaves no partial version: after a restart the version is either
 * absent or whole (the same manifest as a clean publish, every chunk stored and
 * sound per `coordinator fsck`), and publishing again succeeds. The kill
 * moment is a seeded share of a clean publish's bytes on a slowed link
 * (TRIMSWARM_TRIALS, default 3; TRIMSWARM_SEED).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ADMIN_TOKEN_FILE } from '../../coordinator/constants.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { createPrng, makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { freePort } from '../helpers/slapd.ts'
import { recordCounts } from './counts.ts'
import { cli, startCoordinatorProcess, type CliResult } from '../helpers/cli-process.ts'

const TRIALS = Number(process.env.TRIMSWARM_TRIALS ?? 3)
const SEED = Number(process.env.TRIMSWARM_SEED ?? 8)

let tmp: TempDir
let img: TestImage
let clean: { bytes: number, manifestCid: string }
const trials: Array<{ trial: number, killAt: number, bytesAtKill: number, visibleAfterRestart: boolean }> = []

beforeAll(async () => {
  tmp = await tempDir('trimswarm-coord-kill-')
  img = await makeTestImage(tmp.path, { name: 'img', sizeMiB: 8, seed: 41 })
})

afterAll(async () => {
  await tmp?.cleanup()
  await recordCounts('coordinator-kill', {
    promise: 'kill -9 of the coordinator during publish: no partial version after restart, a retry succeeds',
    trials: trials.length,
    faultsInjected: trials.length,
    seed: SEED,
    bytesLost: 0,
    perTrial: trials
  })
})

/** Publishes through `url`; resolves to the CLI result. */
async function publish (url: string, tokenFile: string): Promise<CliResult> {
  return await cli(['publish', img.path, '--image', 'desk', '--version', '1', '--coordinator', url, '--token-file', tokenFile, '--json'])
}

describe(`coordinator kill -9 during publish (${TRIALS} trials, seed ${SEED})`, () => {
  it('clean reference publish', async () => {
    const data = join(tmp.path, 'clean')
    const c = await startCoordinatorProcess(data, 0)
    try {
      const meter = await startByteMeter(c.url)
      const r = await publish(meter.url, join(data, ADMIN_TOKEN_FILE))
      expect(r.code, r.stderr).toBe(0)
      const info = await (await fetch(`${c.url}/v1/images/desk/versions/1/info`, { headers: { authorization: `Bearer ${(await readFile(join(data, ADMIN_TOKEN_FILE), 'utf8')).trim()}` } })).json()
      clean = { bytes: meter.bytes, manifestCid: info.manifestCid }
      await meter.close()
    } finally {
      c.child.kill('SIGTERM')
      await c.exited
    }
    expect(clean.bytes).toBeGreaterThan(1_000_000)
  })

  const prng = createPrng(SEED)
  for (let trial = 1; trial <= TRIALS; trial++) {
    // 5 % .. 100 % of the upload: the last trials often land in the commit itself
    const killAt = trial === TRIALS ? 1 : prng.int(5, 99) / 100
    it(`trial ${trial}: killed at ${Math.round(killAt * 100)} % of the publish, no partial version, the retry succeeds`, async () => {
      const data = join(tmp.path, `t${trial}`)
      const port = await freePort()
      let c = await startCoordinatorProcess(data, port)
      const tokenFile = join(data, ADMIN_TOKEN_FILE)
      // about 2 s for the whole publish, so the kill lands mid-upload
      const meter = await startByteMeter(c.url, { rate: Math.round(clean.bytes / 2) })
      const running = publish(meter.url, tokenFile)
      const deadline = Date.now() + 20_000
      while (meter.bytes < clean.bytes * killAt - 1 && Date.now() < deadline && c.child.exitCode == null) await new Promise(resolve => setTimeout(resolve, 5))
      c.child.kill('SIGKILL')
      expect((await c.exited).signal).toBe('SIGKILL')
      const bytesAtKill = meter.bytes
      const first = await running

      c = await startCoordinatorProcess(data, port)
      try {
        const token = (await readFile(tokenFile, 'utf8')).trim()
        const res = await fetch(`${c.url}/v1/images/desk/versions/1/info`, { headers: { authorization: `Bearer ${token}` } })
        const visible = res.status === 200
        if (visible) {
          // committed before the kill: then whole, and the same version a clean publish makes
          expect((await res.json()).manifestCid).toBe(clean.manifestCid)
        } else {
          expect(res.status).toBe(404)
          expect(first.code).not.toBe(0)
          const list = await fetch(`${c.url}/v1/images`, { headers: { authorization: `Bearer ${token}` } })
          expect((await list.json()).images).toEqual([])
        }
        trials.push({ trial, killAt, bytesAtKill, visibleAfterRestart: visible })

        // the retry: publishes the version, or finds it already there
        const again = await publish(meter.url, tokenFile)
        if (visible) expect(again.stderr + again.stdout).toMatch(/already has version 1|version 1 exists already|"chunksUploaded":0/)
        else expect(again.code, again.stderr).toBe(0)
        const after = await (await fetch(`${c.url}/v1/images/desk/versions/1/info`, { headers: { authorization: `Bearer ${token}` } })).json()
        expect(after.manifestCid).toBe(clean.manifestCid)
      } finally {
        await meter.close()
        c.child.kill('SIGTERM')
        await c.exited
      }
      // and the stored data is sound: every chunk of the version present and true to its hash
      const f = await cli(['coordinator', 'fsck', '--data', data, '--json'])
      expect(f.code, f.stdout + f.stderr).toBe(0)
      const report = JSON.parse(f.stdout)
      expect(report.damaged).toEqual([])
      expect(report.versions).toMatchObject([{ image: 'desk', version: '1', complete: true }])
    })
  }
})
