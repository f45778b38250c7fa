import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { HOOK_SCRIPT, clientCommand, scrapeUrl, seedCommand, trackerCommand } from '../../bench/branch/bittorrent.ts'

const dir = mkdtempSync(join(tmpdir(), 'branch-bt-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('BitTorrent baseline command lines', () => {
  it('no DHT, LPD or peer exchange on the seed and on every client; distinct client ports', () => {
    const [, seed] = seedCommand('/w/bt', ['/w/base.torrent'])
    const [, a] = clientCommand(0, '/w/base.torrent', '/w/hook.sh', ['/w/c-1', '/w/c-2'])
    const [, b] = clientCommand(1, '/w/base.torrent', '/w/hook.sh', ['/w/c-1', '/w/c-2'])
    for (const flag of ['--enable-dht=false', '--enable-dht6=false', '--bt-enable-lpd=false', '--enable-peer-exchange=false']) {
      expect(seed).toContain(flag)
      expect(a[1]).toContain(flag)
    }
    expect(a.slice(3, 7)).toEqual(['/w/base.torrent', '/w/c-1', '6891', '/w/hook.sh'])
    expect(b.slice(3, 7)).toEqual(['/w/base.torrent', '/w/c-2', '6892', '/w/hook.sh'])
    expect(b.slice(7)).toEqual(['/w/c-1', '/w/c-2'])
  })

  it('opentracker: whitelist, not root, chrooted; scrape URL escapes every hash byte', () => {
    const [cmd, args] = trackerCommand('/w/tracker', 'whitelist')
    expect(cmd).toBe('opentracker')
    expect(args.join(' ')).toMatch(/-w whitelist -u nobody -d \/w\/tracker/)
    expect(scrapeUrl('00ff10')).toMatch(/\/scrape\?info_hash=%00%ff%10$/)
  })

  it.skipIf(!existsSync('/usr/bin/zstd'))('the completion hook decompresses into place and marks done; a bad file marks failed, no output', () => {
    const hook = join(dir, 'hook.sh')
    writeFileSync(hook, HOOK_SCRIPT, { mode: 0o755 })
    const data = randomBytes(100_000)
    writeFileSync(join(dir, 'image'), data)
    const good = join(dir, 'good')
    const bad = join(dir, 'bad')
    execFileSync('mkdir', [good, bad])
    execFileSync('zstd', ['-q', '--long=27', join(dir, 'image'), '-o', join(good, 'base.img.zst')])
    execFileSync(hook, ['gid', '1', join(good, 'base.img.zst')])
    expect(readFileSync(join(good, 'out.img')).equals(data)).toBe(true)
    expect(existsSync(join(good, 'done'))).toBe(true)
    writeFileSync(join(bad, 'base.img.zst'), 'not zstd')
    execFileSync(hook, ['gid', '1', join(bad, 'base.img.zst')], { stdio: 'ignore' })
    expect(existsSync(join(bad, 'out.img'))).toBe(false)
    expect(existsSync(join(bad, 'failed'))).toBe(true)
    expect(existsSync(join(bad, 'done'))).toBe(false)
  })
})
