/**
 * Issue 13, attacks by other local users and by holders of a valid login
 * (items 8, 11, 12 of the issue; item 10, CSV export, has its own test in
 * test/coordinator/console/csv.test.ts). Real processes, a real coordinator, a
 * real slapd where the directory is involved.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { chmod, lstat, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { b3sumFile, makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { CLI, startTestCoordinator, type AgentRun, type TestCoordinator } from '../peer-agent/harness.ts'
import { Client } from 'ldapts'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { ConfigError } from '../../coordinator/errors.ts'
import { startTestSlapd, testLdapInit, TEST_LDAP_PASSWORDS, type TestSlapd } from '../helpers/slapd.ts'
import { recordCounts } from './counts.ts'

let tmp: TempDir
let coord: TestCoordinator
let base: TestImage
let next: TestImage

beforeAll(async () => {
  tmp = await tempDir('trimswarm-hostile-lock-')
  base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, seed: 61 })
  next = await makeUpdatedImage(tmp.path, base, { name: 'next', seed: 62 })
  coord = await startTestCoordinator(join(tmp.path, 'files'))
  await coord.publish('ws', 'v1', base.path)
  await coord.publish('ws', 'v2', next.path)
})
let attacks = 0
afterEach(() => { attacks++ }) // a failed case fails the file; the count is what was tried
afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
  await recordCounts('hostile-clients-lock', {
    promise: 'local users and valid logins: the agent and coordinator data dirs are private, CSV exports run no formula, one login limit per user however spelled, admin only by group DN',
    cases: attacks,
    faultsInjected: attacks,
    bytesLost: 0
  })
})

/** Every directory and regular file under `dir` (itself included) with its permission bits. */
async function modes (dir: string): Promise<Array<{ path: string, kind: 'dir' | 'file', mode: string }>> {
  const out: Array<{ path: string, kind: 'dir' | 'file', mode: string }> = []
  const walk = async (d: string): Promise<void> => {
    out.push({ path: relative(dir, d) || '.', kind: 'dir', mode: ((await lstat(d)).mode & 0o777).toString(8) })
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile()) out.push({ path: relative(dir, p), kind: 'file', mode: ((await lstat(p)).mode & 0o777).toString(8) })
    }
  }
  await walk(dir)
  return out
}

/** Entries whose mode is not private (0700 for directories, 0600 for files), optionally leaving out level's own files. */
function notPrivate (list: Awaited<ReturnType<typeof modes>>, options: { skipLevelFiles?: boolean } = {}): string[] {
  const level = /(^|\/)(LOG|LOG\.old|LOCK|CURRENT|MANIFEST-\d+|\d+\.(log|ldb|sst))$/
  return list.filter(e => e.mode !== (e.kind === 'dir' ? '700' : '600') && !(options.skipLevelFiles === true && e.kind === 'file' && level.test(e.path))).map(e => `${e.path} ${e.mode}`)
}

/** `trimswarm agent ARGS` under umask 022, as a service or shell usually runs it. */
function agentUmask022 (args: string[]): { kill: () => void, done: Promise<AgentRun> } {
  const child = spawn('sh', ['-c', 'umask 022 && exec "$@"', 'sh', process.execPath, CLI, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const done = new Promise<AgentRun>((resolve) => { child.on('close', (code, signal) => { resolve({ code, signal, stdout, stderr }) }) })
  return { kill: () => { child.kill('SIGKILL') }, done }
}

describe('item 12: the agent\'s data dir is private (0700/0600), and an existing one is tightened', () => {
  it('every directory and file the agent writes (key, swarm key, agent id, host index, checkpoint, manifests, pack, events, lock), under umask 022', async () => {
    const data = join(tmp.path, 'agent-data')
    const out = join(tmp.path, 'agent-out', 'ws.img')
    const folder = join(tmp.path, 'host-folder')
    await mkdir(folder, { recursive: true })
    await writeFile(join(folder, 'some-file'), Buffer.alloc(64 * 1024, 7))
    const common = ['--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--quiet', '--retries', '2', '--retry-delay', '50', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--linger', '0']
    const first = await agentUmask022(['sync', 'ws@v1', '--coordinator', coord.url, '--index', folder, ...common]).done
    expect(first.code, first.stderr).toBe(0)
    expect(notPrivate(await modes(data))).toEqual([])

    // the update, killed half way: the checkpoint and the delta pack being downloaded stay behind
    const meter = await startByteMeter(coord.url, { rate: 256 * 1024 })
    try {
      const run = agentUmask022(['sync', 'ws@v2', '--coordinator', meter.url, '--no-index', ...common])
      const deadline = Date.now() + 20_000
      while (meter.bytes < 200_000 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
      run.kill()
      await run.done
    } finally {
      await meter.close()
    }
    const killed = await modes(data)
    expect(killed.map(e => e.path)).toEqual(expect.arrayContaining(['coordinator-key.json', 'swarm-key', 'agent-id', 'lock.db', 'host-index', 'partial/ws.json', 'partial/ws.manifest', 'manifests/ws/v1.manifest', 'packs/ws/v1..v2.pack', 'events.jsonl']))
    // level's files created during the killed run get the umask's mode, inside 0700 dirs, until the next start
    expect(notPrivate(killed, { skipLevelFiles: true })).toEqual([])

    const resumed = await agentUmask022(['sync', 'ws@v2', '--coordinator', coord.url, '--no-index', ...common]).done
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(await b3sumFile(next.path))
    expect(notPrivate(await modes(data))).toEqual([])
    // the output is the user's, not the agent's secret: its mode is the usual one
    expect(((await stat(out)).mode & 0o777).toString(8)).toBe('644')
  }, 120_000)

  it('a data dir left world-readable by an older agent (0755/0644) is tightened at the next start', async () => {
    const data = join(tmp.path, 'old-data')
    const out = join(tmp.path, 'old-out', 'ws.img')
    const common = ['--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--quiet', '--no-index', '--no-lan']
    expect((await agentUmask022(['sync', 'ws@v1', ...common]).done).code).toBe(0)
    for (const e of await modes(data)) await chmod(join(data, e.path), e.kind === 'dir' ? 0o755 : 0o644)
    expect(notPrivate(await modes(data)).length).toBeGreaterThan(5)
    // something that is not the agent's, kept in the same folder: left as it is
    await mkdir(join(data, 'notes'), { mode: 0o755 })
    await writeFile(join(data, 'notes', 'run.sh'), '#!/bin/sh\n', { mode: 0o755 })
    await chmod(join(data, 'notes', 'run.sh'), 0o755)
    const r = await agentUmask022(['sync', 'ws@v1', ...common]).done // already up to date: only the start tightens
    expect(r.code, r.stderr).toBe(0)
    expect(notPrivate((await modes(data)).filter(e => !e.path.startsWith('notes')))).toEqual([])
    expect(((await stat(join(data, 'notes', 'run.sh'))).mode & 0o777).toString(8)).toBe('755')
  }, 60_000)

  it('a data dir other users may write to (mode 1777, like /tmp) is refused with one line, and left as it is', async () => {
    const data = join(tmp.path, 'shared-data')
    await mkdir(data)
    await chmod(data, 0o1777)
    const r = await agentUmask022(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data, '--out', join(tmp.path, 'shared-out', 'ws.img'), '--quiet', '--no-index', '--no-lan']).done
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr.trim().split('\n')).toEqual([`trimswarm agent sync: data dir ${data} is writable by other users (mode 1777); give the agent a folder of its own (it makes it mode 0700)`])
    expect(((await stat(data)).mode & 0o7777).toString(8)).toBe('1777')
  })

  it('a coordinator data dir left 0755 (secrets 0644) is tightened on start', async () => {
    const dir = join(tmp.path, 'coord-old')
    const c1 = createCoordinator({ dataDir: dir, serve: false, logLevel: 'silent' })
    await c1.start()
    await c1.stop()
    await chmod(dir, 0o755)
    const secrets = (await readdir(dir, { withFileTypes: true })).filter(e => e.isFile()).map(e => e.name)
    expect(secrets.length).toBeGreaterThanOrEqual(3)
    for (const f of secrets) await chmod(join(dir, f), 0o644)
    const c2 = createCoordinator({ dataDir: dir, serve: false, logLevel: 'silent' })
    await c2.start()
    await c2.stop()
    expect(((await stat(dir)).mode & 0o777).toString(8)).toBe('700')
    for (const f of secrets) expect([f, ((await stat(join(dir, f))).mode & 0o777).toString(8)]).toEqual([f, '600'])
  })

  it('a coordinator data dir other users may write to (mode 1777) is refused and left as it is', async () => {
    const dir = join(tmp.path, 'coord-shared')
    await mkdir(dir)
    await chmod(dir, 0o1777)
    const err = await createCoordinator({ dataDir: dir, serve: false, logLevel: 'silent' }).start().then(() => undefined, (e: Error) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect(err?.message).toBe(`data dir ${dir} is writable by other users (mode 1777); give the coordinator a folder of its own (it makes it mode 0700)`)
    expect(((await stat(dir)).mode & 0o7777).toString(8)).toBe('1777')
  })
})

describe('item 10: CSV export of what a machine token posted', () => {
  it('an event whose error text is a formula disguised as a negative number is exported as text, never as a formula', async () => {
    const token = (await readFile(coord.tokenFile, 'utf8')).trim()
    const formula = "-1+cmd|' /C calc'!A0"
    const event = { id: 'hostile-csv-1', type: 'sync.failed', time: new Date().toISOString(), agent: 'csv-attacker', site: 'default', image: 'ws', version: 'v1', error: formula }
    const posted = await fetch(`${coord.url}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ events: [event] }) })
    expect(posted.status, await posted.text()).toBe(200)
    const csv = await (await fetch(`${coord.url}/console/api/events.csv`, { headers: { authorization: `Bearer ${coord.coordinator.adminToken}` } })).text()
    const line = csv.split('\r\n').find(l => l.includes('cmd|'))
    expect(line).toBeDefined()
    expect(line).toContain(`"'${formula}"`)
    // no cell of the export starts with a formula character (cells split on commas outside quotes)
    for (const l of csv.split('\r\n')) {
      for (const cell of l.match(/("([^"]|"")*"|[^,]*)/g) ?? []) {
        const text = cell.startsWith('"') ? cell.slice(1, -1).replace(/""/g, '"') : cell
        if (/^-?\d+(\.\d+)?$/.test(text)) continue // a number the coordinator wrote
        expect(text).not.toMatch(/^[=+\-@\t\r]/)
      }
    }
  })
})

describe('items 8 and 11: directory logins (real slapd)', () => {
  let slapd: TestSlapd
  const started: Coordinator[] = []
  beforeAll(async () => {
    slapd = await startTestSlapd()
    // a group named like the admin group, elsewhere in the directory (where e.g. a helpdesk may create groups), with bob in it
    const root = new Client({ url: slapd.url })
    try {
      await root.bind(`cn=admin,${slapd.baseDN}`, 'admin-password') // scripts/slapd.sh's rootdn
      await root.add(`cn=trimswarm-admins,${slapd.usersDN}`, { objectClass: 'groupOfNames', cn: 'trimswarm-admins', member: `uid=bob,${slapd.usersDN}` })
    } finally {
      await root.unbind()
    }
  }, 60_000)
  afterAll(async () => {
    for (const c of started) await c.stop()
    await slapd?.stop()
  })

  let n = 0
  async function coordinator (config: Record<string, unknown>): Promise<Coordinator> {
    const c = createCoordinator({ dataDir: join(tmp.path, `ldap-${++n}`), serve: false, logLevel: 'silent', config: { ldap: testLdapInit(slapd), ...config } })
    await c.start()
    started.push(c)
    return c
  }
  async function login (c: Coordinator, user: string, password: string): Promise<{ status: number, token?: string }> {
    const res = await c.app.request('/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password }) })
    const body = await res.json()
    return { status: res.status, token: body.token }
  }
  async function kind (c: Coordinator, user: keyof typeof TEST_LDAP_PASSWORDS): Promise<string> {
    const r = await login(c, user, TEST_LDAP_PASSWORDS[user])
    expect(r.status, `${user} login`).toBe(200)
    return (await (await c.app.request('/v1/auth/me', { headers: { authorization: `Bearer ${r.token}` } })).json()).kind
  }

  it('item 8: "bob ", " bob" and "BOB" share bob\'s failure counter', async () => {
    const c = await coordinator({ loginRateLimit: { maxFailuresPerUser: 3, maxPerIp: 1000 } })
    for (const spelling of ['bob ', ' bob', 'BOB']) expect((await login(c, spelling, 'wrong-password')).status, JSON.stringify(spelling)).toBe(401)
    // the limit is reached for bob, whatever the spelling, even with the right password
    expect((await login(c, 'bob', TEST_LDAP_PASSWORDS.bob)).status).toBe(429)
    expect((await login(c, ' Bob ', TEST_LDAP_PASSWORDS.bob)).status).toBe(429)
    expect((await login(c, 'alice', TEST_LDAP_PASSWORDS.alice)).status).toBe(200) // another user is not affected
  })

  it('item 8: a login name the filter maps to the same entry (a mail address) counts for the canonical name', async () => {
    const c = await coordinator({ ldap: testLdapInit(slapd, { userFilter: '(|(uid={user})(mail={user}))' }), loginRateLimit: { maxFailuresPerUser: 3, maxPerIp: 1000 } })
    expect((await login(c, 'carol@example.org', 'wrong-password')).status).toBe(401)
    expect((await login(c, 'CAROL@example.org', 'wrong-password')).status).toBe(401)
    expect((await login(c, 'carol', 'wrong-password')).status).toBe(401)
    expect((await login(c, 'carol', TEST_LDAP_PASSWORDS.carol)).status).toBe(429)
    expect((await login(c, 'carol@example.org', TEST_LDAP_PASSWORDS.carol)).status).toBe(429)
  })

  for (const mode of ['memberOf', 'search'] as const) {
    it(`item 11: admin groups by full DN; a group named trimswarm-admins elsewhere does not grant admin (${mode})`, async () => {
      const ldap = mode === 'memberOf' ? testLdapInit(slapd) : testLdapInit(slapd, { groupSource: 'search', groupSearchBase: slapd.baseDN })
      const c = await coordinator({ ldap, adminGroups: [`CN=trimswarm-admins, OU=groups,${slapd.baseDN}`] }) // spelled differently: DNs compare as the directory does
      expect(await kind(c, 'dave')).toBe('admin')
      expect(await kind(c, 'bob')).toBe('user')
    })
  }

  it('item 11: a short admin group name is refused unless the config opts in (adminGroupsByName), which then matches any group of that name', async () => {
    const c = createCoordinator({ dataDir: join(tmp.path, 'ldap-short'), serve: false, logLevel: 'silent', config: { ldap: testLdapInit(slapd), adminGroups: ['trimswarm-admins'] } })
    const err = await c.start().then(() => undefined, (e: Error) => e)
    if (err == null) started.push(c)
    expect(err).toBeInstanceOf(ConfigError)
    expect(err?.message).toMatch(/adminGroups\[0\]: "trimswarm-admins" is a short group name.*full DN.*adminGroupsByName/)
    const opted = await coordinator({ adminGroups: ['trimswarm-admins'], adminGroupsByName: true })
    expect(await kind(opted, 'dave')).toBe('admin')
    expect(await kind(opted, 'bob')).toBe('admin') // the documented risk of the option
  })

  it('item 11: no admin groups unless configured', async () => {
    const c = await coordinator({})
    expect(await kind(c, 'bob')).toBe('user') // the attack: admin by the group elsewhere named trimswarm-admins (the old default)
    expect(await kind(c, 'dave')).toBe('user')
  })
})
