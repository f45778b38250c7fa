/**
 * Starts a private, real OpenLDAP slapd for a test file through
 * scripts/slapd.sh, on free 127.0.0.1 ports, loaded with
 * test/fixtures/ldap/directory.ldif (alice: desk, bob: lab, carol: desk + lab,
 * dave: trimswarm-admins, eve(ext): contractors; passwords `<name>-password`).
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { LdapInit } from '../../coordinator/ldap-authenticator.ts'

const run = promisify(execFile)
const SCRIPT = new URL('../../scripts/slapd.sh', import.meta.url).pathname

/** Passwords of the fixture users (documented in the LDIF header). */
export const TEST_LDAP_PASSWORDS = {
  alice: 'alice-password',
  bob: 'bob-password',
  carol: 'carol-password',
  dave: 'dave-password',
  'eve(ext)': 'eve-password'
} as const

/** A running test slapd and the values a client needs to use it. */
export interface TestSlapd {
  /** ldap://127.0.0.1:PORT (StartTLS works here too when started with `tls`). */
  url: string
  /** ldaps://127.0.0.1:TLSPORT, only with `tls`. */
  ldapsUrl?: string
  /** PEM file of the CA that signed the server certificate, only with `tls`. */
  caFile?: string
  /** dc=example,dc=org */
  baseDN: string
  /** People live here: ou=people,<baseDN>. */
  usersDN: string
  /** groupOfNames entries live here: ou=groups,<baseDN>. */
  groupsDN: string
  /** The read-only service account. */
  bindDN: string
  bindPassword: string
  /** Data, config, log and pid file of this slapd. */
  dir: string
  /** Stops slapd and keeps its data (the directory is down). */
  pause: () => Promise<void>
  /** Starts slapd again on the same ports with the same data. */
  resume: () => Promise<void>
  /** The running slapd's pid (for SIGSTOP tests of a hung directory). */
  pid: () => Promise<number>
  /** Stops slapd and deletes its directory; safe to call twice. */
  stop: () => Promise<void>
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr != null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

function parseOutput (stdout: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of stdout.split('\n')) {
    const i = line.indexOf('=')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

/** Starts a slapd of its own for the caller; `tls` adds LDAPS and StartTLS with a throwaway CA. */
export async function startTestSlapd (opts: { tls?: boolean } = {}): Promise<TestSlapd> {
  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-slapd-'))
  let args: string[] = []
  const pickPorts = async (): Promise<void> => {
    const port = await freePort()
    let tlsPort = opts.tls === true ? await freePort() : undefined
    while (tlsPort === port) tlsPort = await freePort()
    args = ['start', dir, String(port), ...(tlsPort != null ? ['--tls', String(tlsPort)] : [])]
  }
  const start = async (): Promise<Record<string, string>> => {
    try {
      const { stdout } = await run(SCRIPT, args, { timeout: 30_000 })
      return parseOutput(stdout)
    } catch (err: any) {
      throw new Error(`scripts/slapd.sh ${args.join(' ')} failed: ${String(err.stderr ?? err.message)}`, { cause: err })
    }
  }
  let out: Record<string, string> | undefined
  // Another process may take a "free" port before slapd binds it: try fresh ports a few times.
  for (let attempt = 1; out == null; attempt++) {
    await pickPorts()
    try {
      out = await start()
    } catch (err) {
      if (attempt < 3) continue
      await rm(dir, { recursive: true, force: true })
      throw err
    }
  }
  const pause = async (): Promise<void> => { await run(SCRIPT, ['stop', dir], { timeout: 30_000 }) }
  let stopped = false
  return {
    url: out.url,
    ...(out.ldapsUrl != null ? { ldapsUrl: out.ldapsUrl, caFile: out.caFile } : {}),
    baseDN: out.baseDN,
    usersDN: `ou=people,${out.baseDN}`,
    groupsDN: `ou=groups,${out.baseDN}`,
    bindDN: out.bindDN,
    bindPassword: out.bindPassword,
    dir,
    pause,
    resume: async () => { await start() },
    pid: async () => Number((await readFile(join(dir, 'slapd.pid'), 'utf8')).trim()),
    stop: async () => {
      if (stopped) return
      stopped = true
      await pause()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/**
 * The coordinator's `ldap` config for a test slapd (memberOf groups, plain
 * ldap://); `overrides` switch e.g. to `groupSource: 'search'` or LDAPS.
 */
export function testLdapInit (slapd: TestSlapd, overrides: Partial<LdapInit> = {}): LdapInit {
  return { url: slapd.url, bindDN: slapd.bindDN, bindPassword: slapd.bindPassword, userSearchBase: slapd.usersDN, ...overrides }
}
