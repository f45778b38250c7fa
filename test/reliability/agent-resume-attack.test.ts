/**
 * Promise (issue 13 item 3): a local user who can write the output folder
 * cannot make a resumed sync write another file, install a symlink, or install
 * a mix of versions. A real agent process is killed mid-sync (after a
 * checkpoint vouched for some chunks); the partial file is then replaced, and
 * the sync run again: the output is a regular file, b3sum-equal to the
 * published image, and the file the attacker pointed at is untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { lstat, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { partialPathOf } from '../../peer-agent/output-guard.ts'
import { b3sumFile, seededBytes, type TempDir, type TestImage } from '../helpers/images.ts'
import { recordCounts } from './counts.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { runAgent, spawnAgent, type AgentRun, type TestCoordinator, startPublishedTestImage } from '../peer-agent/harness.ts'

let tmp: TempDir
let coord: TestCoordinator
let img: TestImage
let imgSum: string
let cleanBytes = 0

beforeAll(async () => {
  // segments of 64 blocks: the agent decodes a segment once all of it is in, and the image's ~460 blocks
  // would be one default segment (1,008 blocks), all verified at once at the very end; with several, a
  // checkpoint vouches for some chunks while others are still to come, as on a real image's hundreds
  ;({ tmp, img, imgSum, coord } = await startPublishedTestImage('trimswarm-resume-attack-', { name: 'img', sizeMiB: 8, seed: 47 }, { segments: { segmentBlocks: 64 } }))
  // a clean run's WAN bytes, to pace the killed run
  const meter = await startByteMeter(coord.url)
  const r = await runAgent(args(meter.url, join(tmp.path, 'clean-data'), join(tmp.path, 'clean', 'ws.img')))
  cleanBytes = meter.bytes
  await meter.close()
  if (r.code !== 0) throw new Error(r.stderr)
})

/** Attacks whose test passed: the output was the published image, the other file untouched. */
let attacksHeld = 0

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
  await recordCounts('agent-resume-attack', {
    promise: 'a local user who can write the output folder cannot make a resumed sync write another file, install a symlink, or install a mix (kill -9, then the partial file or output replaced)',
    trials: attacksHeld,
    faultsInjected: attacksHeld,
    bytesLost: 0
  })
})

function args (url: string, data: string, out: string): string[] {
  return ['sync', 'ws@v1', '--coordinator', url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--retries', '2', '--retry-delay', '50', '--no-index', '--no-lan']
}

/** Verified chunks in the checkpoint of image ws under `data` (0 when there is none yet). */
async function verifiedInCheckpoint (data: string): Promise<number> {
  try {
    const cp = JSON.parse(await readFile(join(data, 'partial', 'ws.json'), 'utf8')) as { verified: string }
    let n = 0
    for (const b of Buffer.from(cp.verified, 'base64')) for (let k = 0; k < 8; k++) n += (b >> k) & 1
    return n
  } catch {
    return 0
  }
}

/** Whether the partial file at `out` was written after the checkpoint under `data` recorded it (its change time moved on). */
async function writtenSinceCheckpoint (data: string, out: string): Promise<boolean> {
  try {
    const cp = JSON.parse(await readFile(join(data, 'partial', 'ws.json'), 'utf8')) as { file: { ctime: string } }
    const st = await stat(partialPathOf(out), { bigint: true })
    return st.ctimeNs.toString() !== cp.file.ctime
  } catch {
    return false
  }
}

/**
 * Starts a paced sync into `out` and stops it with `signal` (SIGKILL by default) once a checkpoint
 * vouches for some chunks; with `afterWrite`, only once the partial file was also written after that
 * checkpoint (a segment's blocks arrive in bursts of one decoded piece, and the checkpoint can fall
 * at the end of one: a kill right then leaves a file unchanged since, which a resume rightly trusts).
 */
async function killMidSync (data: string, out: string, signal: NodeJS.Signals = 'SIGKILL', afterWrite = false): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    // about 8 s for the whole transfer: the first checkpoint (2 s) lands well before the end
    const meter = await startByteMeter(coord.url, { rate: Math.round(cleanBytes / 8) })
    const { child, done } = spawnAgent(args(meter.url, data, out))
    const deadline = Date.now() + 30_000
    const ready = async (): Promise<boolean> => await verifiedInCheckpoint(data) > 0 && (!afterWrite || await writtenSinceCheckpoint(data, out))
    while (!(await ready()) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    child.kill(signal)
    const killed = await done
    await meter.close()
    if (signal === 'SIGKILL') expect(killed.signal, `the agent finished before the kill: ${killed.stderr}`).toBe('SIGKILL')
    else expect(killed.stderr).toMatch(/interrupted/)
    expect(await verifiedInCheckpoint(data)).toBeGreaterThan(0)
    // a checkpoint can still land between that check and the kill (a loaded machine): the file is then unchanged
    // since it, which a resume rightly trusts; start over rather than test a resume of the wrong case
    if (!afterWrite || await writtenSinceCheckpoint(data, out)) return
    expect(attempt, 'a checkpoint landed between the check and the kill three times in a row').toBeLessThan(3)
    await rm(data, { recursive: true, force: true })
    await rm(dirname(out), { recursive: true, force: true })
  }
}

/**
 * Kills a sync into `name`-out/ws.img mid-way, lets `attack` do what it wants with the partial
 * file, runs the sync again: it must succeed with a regular output file holding the published image.
 */
async function attackPartial (name: string, attack: (partial: string, dir: string) => Promise<void>): Promise<AgentRun> {
  const data = join(tmp.path, `${name}-data`)
  const dir = join(tmp.path, `${name}-out`)
  const out = join(dir, 'ws.img')
  await killMidSync(data, out)
  await attack(join(dir, '.ws.img.trimswarm-partial'), dir)
  const r = await runAgent(args(coord.url, data, out))
  expect(r.code, r.stderr).toBe(0)
  expect((await lstat(out)).isFile()).toBe(true)
  expect(await b3sumFile(out)).toBe(imgSum)
  attacksHeld++
  return r
}

describe('resume against a local user who can write the output folder', () => {
  it('partial file replaced by a symlink to another file: that file is untouched, the output is a regular file with the right bytes', async () => {
    // the victim: same size as the image, so a size check alone accepts it
    const victim = join(tmp.path, 'victim.bin')
    await writeFile(victim, seededBytes(5, img.size))
    const victimSum = await b3sumFile(victim)
    const r = await attackPartial('sym', async (partial) => {
      await rm(partial)
      await symlink(victim, partial)
    })
    expect(await b3sumFile(victim)).toBe(victimSum)
    expect(r.stderr).toMatch(/not a regular file|not the one this agent wrote/)
  })

  it('partial file replaced by a same-size file with bits flipped in verified chunks: the output is still the published image', async () => {
    await attackPartial('flip', async (partial, dir) => {
      const bytes = new Uint8Array(await readFile(partial))
      expect(bytes.length).toBe(img.size)
      for (let i = 0; i < bytes.length; i += 4096) bytes[i] ^= 0x5a // one byte of every block, verified or not
      const forged = join(dir, 'forged.tmp')
      await writeFile(forged, bytes)
      await rename(forged, partial)
    })
  })

  it('a clean stop (SIGINT) keeps the verified bitmap: the resume trusts it, only a kill -9 makes it hash the partial file again', async () => {
    const data = join(tmp.path, 'int-data')
    const out = join(tmp.path, 'int-out', 'ws.img')
    await killMidSync(data, out, 'SIGINT')
    // --verbose: the info lines (the one saying it hashes again) go to stderr despite --json
    const r = await runAgent([...args(coord.url, data, out), '--verbose'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).not.toMatch(/hashing every chunk of it again|starting it afresh/)
    expect(await b3sumFile(out)).toBe(imgSum)
    // and after kill -9 the same resume says it hashes again
    const data2 = join(tmp.path, 'kill-data')
    const out2 = join(tmp.path, 'kill-out', 'ws.img')
    await killMidSync(data2, out2, 'SIGKILL', true)
    const r2 = await runAgent([...args(coord.url, data2, out2), '--verbose'])
    expect(r2.code, r2.stderr).toBe(0)
    expect(r2.stderr).toMatch(/hashing every chunk of it again/)
    expect(await b3sumFile(out2)).toBe(imgSum)
  })

  it('output moved aside and replaced by a symlink to it: the next sync does not call that up to date, nor write through it', async () => {
    const data = join(tmp.path, 'out-data')
    const dir = join(tmp.path, 'out-dir')
    const out = join(dir, 'ws.img')
    expect((await runAgent(args(coord.url, data, out))).code).toBe(0)
    // the installed file itself (same size, same mtime), now at a name the attacker controls, reached through a symlink
    const aside = join(dir, 'aside.img')
    await rename(out, aside)
    await symlink(aside, out)
    const asideIno = (await stat(aside)).ino

    const r = await runAgent(args(coord.url, data, out))
    expect(r.code, r.stderr).toBe(0)
    expect(r.summary?.upToDate).toBe(false)
    expect((await lstat(out)).isFile()).toBe(true)
    expect((await lstat(out)).ino).not.toBe(asideIno)
    expect(await b3sumFile(out)).toBe(imgSum)
    attacksHeld++
  })
})
