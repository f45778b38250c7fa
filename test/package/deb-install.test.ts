/**
 * The Debian package on a fresh Debian 12 (issue 15): scripts/build-deb.sh
 * builds it, `dpkg -i` installs it into a debootstrapped minbase root with
 * nothing else and no network, and inside it (test/package/deb-smoke.sh)
 * `trimswarm --version`, a coordinator run as the trimswarm user, a publish and
 * an agent sync of a small image work; the synced image is compared byte for
 * byte here. The installed units pass `systemd-analyze verify`; remove keeps
 * the config and data, purge deletes the config and keeps /var/lib/trimswarm.
 */
import { execFile } from 'node:child_process'
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { debianRootUnavailable, makeDebianRoot, runInRoot } from '../helpers/debian-root.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const VERSION: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version
const unavailable = debianRootUnavailable()

/** The `key: value` lines deb-smoke.sh prints. */
function fields (output: string): Record<string, string> {
  return Object.fromEntries(output.split('\n').map(l => /^(\w+): (.*)$/.exec(l)).filter(m => m != null).map(m => [m[1], m[2].trim()]))
}

describe.skipIf(unavailable != null)(`Debian package on a fresh Debian 12${unavailable != null ? ` (skipped: ${unavailable})` : ''}`, () => {
  let dir: TempDir | undefined
  afterAll(async () => { await dir?.cleanup() })

  it('installs with nothing else; coordinator, publish and agent sync work byte for byte; units verify; remove and purge keep the data', async () => {
    dir = await tempDir('trimswarm-deb-')
    const t0 = performance.now()
    const { stdout } = await promisify(execFile)(join(ROOT, 'scripts', 'build-deb.sh'), [join(dir.path, 'out')], { cwd: ROOT })
    const deb = stdout.trim().split('\n').at(-1)!
    expect(deb).toBe(join(dir.path, 'out', `trimswarm_${VERSION}_amd64.deb`))
    const t1 = performance.now()
    const root = join(dir.path, 'root')
    const { cached } = await makeDebianRoot(root)
    const t2 = performance.now()

    // 8 MiB: random chunks, a repeated run and a zero run, so dedup and sparse paths are in the image too
    const image = new Uint8Array(8 * 1048576)
    image.set(seededBytes(15, 5 * 1048576))
    image.set(image.subarray(0, 1048576), 5 * 1048576)
    await writeFile(join(root, 'tmp', 'smoke.img'), image)
    await copyFile(deb, join(root, 'tmp', 'trimswarm.deb'))
    await copyFile(join(import.meta.dirname, 'deb-smoke.sh'), join(root, 'tmp', 'deb-smoke.sh'))

    const use = await runInRoot(root, ['/bin/sh', '/tmp/deb-smoke.sh', 'use', '/tmp/trimswarm.deb', '/tmp/smoke.img', '/tmp/synced.img'], 300_000)
    expect(use.code, use.output).toBe(0)
    const f = fields(use.output)
    expect(f.version).toBe(`trimswarm ${VERSION}`)
    expect(f.user).toBe('trimswarm:/var/lib/trimswarm:/usr/sbin/nologin')
    expect(f.state).toBe('700 trimswarm:trimswarm')
    expect(f.conffiles.split(' ').sort()).toEqual(['/etc/trimswarm/agent.json', '/etc/trimswarm/coordinator.json'])
    expect(JSON.parse(f.health)).toMatchObject({ ok: true, version: VERSION })
    expect(f.synced).toBe(`${image.length} trimswarm`)
    const synced = await readFile(join(root, 'tmp', 'synced.img'))
    expect(Buffer.compare(synced, image)).toBe(0)
    const t3 = performance.now()

    // the units as installed, against the root's own systemd (its targets and users): any warning fails too
    const units = ['trimswarm-coordinator.service', 'trimswarm-agent.service'].map(u => `/lib/systemd/system/${u}`)
    const verify = await promisify(execFile)('systemd-analyze', ['verify', `--root=${root}`, ...units]).then(r => ({ code: 0, out: r.stdout + r.stderr }), (e) => ({ code: e.code as number, out: `${e.stdout}${e.stderr}` }))
    expect(verify, verify.out).toEqual({ code: 0, out: '' })

    const remove = await runInRoot(root, ['/bin/sh', '/tmp/deb-smoke.sh', 'remove'], 120_000)
    expect(remove.code, remove.output).toBe(0)
    expect(fields(remove.output)).toMatchObject({ removed: 'bin=gone config=kept data=kept', purged: 'config=gone data=kept user=kept' })
    await rm(root, { recursive: true, force: true })
    const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
    process.stderr.write(`deb-install: build-deb ${s(t1 - t0)}, Debian root ${s(t2 - t1)} (${cached ? 'from cache' : 'debootstrap, now cached'}), install + coordinator + publish + sync ${s(t3 - t2)}, total ${s(performance.now() - t0)}\n`)
  }, 900_000)
})
