import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BAD_CREDENTIALS_MESSAGE, createLdapAuthenticator, escapeFilterValue, firstRdnValue, parseLdapConfig
} from '../../coordinator/ldap-authenticator.ts'
import type { LdapInit } from '../../coordinator/ldap-authenticator.ts'
import type { Authenticator } from '../../coordinator/interface.ts'
import { UnauthorizedError, UnavailableError, ValidationError } from '../../protocol/errors.ts'
import { freePort, startTestSlapd, testLdapInit, TEST_LDAP_PASSWORDS as PW } from '../helpers/slapd.ts'
import type { TestSlapd } from '../helpers/slapd.ts'

let slapd: TestSlapd
let base: LdapInit

beforeAll(async () => {
  slapd = await startTestSlapd({ tls: true })
  base = testLdapInit(slapd)
})

afterAll(async () => {
  await slapd?.stop()
})

async function refusal (auth: Authenticator, user: string, password: string): Promise<Error> {
  const err = await auth.authenticate(user, password).then(() => null, (e: Error) => e)
  if (err == null) throw new Error(`${user} was let in`)
  return err
}

const FIXTURE_GROUPS: Array<[string, string[]]> = [
  ['alice', ['desk']],
  ['bob', ['lab']],
  ['carol', ['desk', 'lab']],
  ['dave', ['trimswarm-admins']],
  ['eve(ext)', ['contractors']]
]

describe('LDAP authenticator against a real slapd', () => {
  for (const mode of ['memberOf', 'search'] as const) {
    it(`reads each user's groups (${mode})`, async () => {
      const auth = createLdapAuthenticator({}, mode === 'memberOf'
        ? { ...base, groupSource: 'memberOf' }
        : { ...base, groupSource: 'search', groupSearchBase: slapd.groupsDN })
      for (const [user, groups] of FIXTURE_GROUPS) {
        expect(await auth.authenticate(user, PW[user as keyof typeof PW])).toEqual({ user, groups, groupDNs: groups.map(g => `cn=${g},${slapd.groupsDN}`) })
      }
    })
  }

  it('gives the same 401-class error for a wrong password and an unknown user', async () => {
    const auth = createLdapAuthenticator({}, base)
    const wrong = await refusal(auth, 'alice', 'bob-password')
    const unknown = await refusal(auth, 'mallory', 'alice-password')
    expect(wrong).toBeInstanceOf(UnauthorizedError)
    expect(unknown).toBeInstanceOf(UnauthorizedError)
    expect(wrong.message).toBe(BAD_CREDENTIALS_MESSAGE)
    expect(unknown.message).toBe(wrong.message)
  })

  it('refuses an empty password (an LDAP unauthenticated bind) and an empty user', async () => {
    const auth = createLdapAuthenticator({}, base)
    expect(await refusal(auth, 'alice', '')).toBeInstanceOf(UnauthorizedError)
    expect(await refusal(auth, '', 'alice-password')).toBeInstanceOf(UnauthorizedError)
  })

  it('escapes the user name: filter metacharacters never match another user', async () => {
    const auth = createLdapAuthenticator({}, base)
    // Unescaped, (uid=al*) would find alice and her password would log in.
    for (const user of ['al*', '*', '*)(uid=*', 'alice)(uid=*', 'alice\\', 'a\u0000lice']) {
      const err = await refusal(auth, user, PW.alice)
      expect(err, user).toBeInstanceOf(UnauthorizedError)
      expect(err.message).toBe(BAD_CREDENTIALS_MESSAGE)
    }
    // A real name with parentheses still works (escaped in the user filter and, for the group search, in {dn}).
    const search = createLdapAuthenticator({}, { ...base, groupSource: 'search', groupSearchBase: slapd.groupsDN })
    expect(await search.authenticate('eve(ext)', PW['eve(ext)'])).toMatchObject({ user: 'eve(ext)', groups: ['contractors'] })
  })

  it('returns the directory\'s spelling of the user name', async () => {
    const auth = createLdapAuthenticator({}, base)
    expect(await auth.authenticate('ALICE', PW.alice)).toMatchObject({ user: 'alice', groups: ['desk'] })
  })

  it('uses a configured user filter (log in by mail address)', async () => {
    const auth = createLdapAuthenticator({}, { ...base, userFilter: '(&(objectClass=inetOrgPerson)(mail={user}))' })
    expect(await auth.authenticate('carol@example.org', PW.carol)).toMatchObject({ user: 'carol', groups: ['desk', 'lab'] })
    expect(await refusal(auth, 'carol', PW.carol)).toBeInstanceOf(UnauthorizedError)
  })

  it('reads the service password from bindPasswordFile', async () => {
    const file = join(slapd.dir, 'service.secret')
    await writeFile(file, `${slapd.bindPassword}\n`)
    await chmod(file, 0o600)
    const auth = createLdapAuthenticator({}, { ...base, bindPassword: undefined, bindPasswordFile: file })
    expect(await auth.authenticate('bob', PW.bob)).toMatchObject({ user: 'bob', groups: ['lab'] })
  })

  it('reports a refused service account bind as unavailable, not as the user\'s fault', async () => {
    const auth = createLdapAuthenticator({}, { ...base, bindPassword: 'not-the-service-password' })
    const err = await refusal(auth, 'alice', PW.alice)
    expect(err).toBeInstanceOf(UnavailableError)
    expect(err.message).toContain('service account')
  })

  describe('TLS', () => {
    it('LDAPS with the test CA', async () => {
      const auth = createLdapAuthenticator({}, { ...base, url: slapd.ldapsUrl as string, caFile: slapd.caFile })
      expect(await auth.authenticate('carol', PW.carol)).toEqual({ user: 'carol', groups: ['desk', 'lab'], groupDNs: [`cn=desk,${slapd.groupsDN}`, `cn=lab,${slapd.groupsDN}`] })
      expect(await refusal(auth, 'carol', PW.alice)).toBeInstanceOf(UnauthorizedError)
    })

    it('LDAPS refuses a server certificate it cannot verify, unless told not to check', async () => {
      const untrusted = createLdapAuthenticator({}, { ...base, url: slapd.ldapsUrl as string })
      expect(await refusal(untrusted, 'carol', PW.carol)).toBeInstanceOf(UnavailableError)
      const unchecked = createLdapAuthenticator({}, { ...base, url: slapd.ldapsUrl as string, rejectUnauthorized: false })
      expect((await unchecked.authenticate('carol', PW.carol)).user).toBe('carol')
    })

    it('StartTLS with the test CA, and no StartTLS to an unverifiable server', async () => {
      const auth = createLdapAuthenticator({}, { ...base, startTLS: true, caFile: slapd.caFile, groupSource: 'search', groupSearchBase: slapd.groupsDN })
      expect(await auth.authenticate('dave', PW.dave)).toEqual({ user: 'dave', groups: ['trimswarm-admins'], groupDNs: [`cn=trimswarm-admins,${slapd.groupsDN}`] })
      // Proves the upgrade really happens: without the CA the handshake fails.
      const untrusted = createLdapAuthenticator({}, { ...base, startTLS: true })
      const err = await refusal(untrusted, 'dave', PW.dave)
      expect(err).toBeInstanceOf(UnavailableError)
      expect(err.message).toContain('StartTLS')
    })
  })

  describe('directory down', () => {
    it('nothing listening: UnavailableError naming the URL', async () => {
      const url = `ldap://127.0.0.1:${await freePort()}`
      const auth = createLdapAuthenticator({}, { ...base, url })
      const err = await refusal(auth, 'alice', PW.alice)
      expect(err).toBeInstanceOf(UnavailableError)
      expect(err.message).toContain(url)
    })

    it('a hung server (SIGSTOP) times out as UnavailableError, an abort ends the wait, and it recovers', async () => {
      const auth = createLdapAuthenticator({}, { ...base, timeoutMs: 300, connectTimeoutMs: 300 })
      const pid = await slapd.pid()
      process.kill(pid, 'SIGSTOP')
      try {
        const t0 = Date.now()
        const err = await refusal(auth, 'alice', PW.alice)
        expect(err).toBeInstanceOf(UnavailableError)
        expect(Date.now() - t0).toBeLessThan(5000)

        const slow = createLdapAuthenticator({}, { ...base, timeoutMs: 30_000 })
        const ac = new AbortController()
        const t1 = Date.now()
        setTimeout(() => { ac.abort(new Error('caller gave up')) }, 100)
        await expect(slow.authenticate('alice', PW.alice, { signal: ac.signal })).rejects.toThrow('caller gave up')
        expect(Date.now() - t1).toBeLessThan(5000)
      } finally {
        process.kill(pid, 'SIGCONT')
      }
      expect(await auth.authenticate('alice', PW.alice)).toMatchObject({ user: 'alice', groups: ['desk'] })
    })

    it('slapd stopped: UnavailableError; started again: the same authenticator works', async () => {
      const auth = createLdapAuthenticator({}, base)
      expect((await auth.authenticate('bob', PW.bob)).groups).toEqual(['lab'])
      await slapd.pause()
      try {
        const err = await refusal(auth, 'bob', PW.bob)
        expect(err).toBeInstanceOf(UnavailableError)
        expect(err.message).toContain(slapd.url)
      } finally {
        await slapd.resume()
      }
      expect(await auth.authenticate('bob', PW.bob)).toMatchObject({ user: 'bob', groups: ['lab'] })
      expect(await refusal(auth, 'bob', PW.alice)).toBeInstanceOf(UnauthorizedError)
    })
  })
})

describe('parseLdapConfig', () => {
  const ok = { url: 'ldaps://dc1.corp.example:636', bindDN: 'CN=svc,OU=Service,DC=corp', bindPassword: 'x', userSearchBase: 'DC=corp' }

  it('accepts a minimal and a full config', () => {
    expect(parseLdapConfig(ok)).toEqual(ok)
    const full = {
      ...ok,
      url: 'ldap://127.0.0.1:389',
      bindPassword: undefined,
      bindPasswordFile: '/etc/trimswarm/ldap.secret',
      userFilter: '(sAMAccountName={user})',
      userNameAttribute: 'sAMAccountName',
      groupSource: 'search',
      memberOfAttribute: 'memberOf',
      groupSearchBase: 'OU=Groups,DC=corp',
      groupFilter: '(member:1.2.840.113556.1.4.1941:={dn})',
      groupNameAttribute: 'cn',
      startTLS: true,
      caFile: '/etc/ssl/corp-ca.pem',
      rejectUnauthorized: true,
      timeoutMs: 2000,
      connectTimeoutMs: 1000
    }
    const { bindPassword, ...expected } = full
    expect(parseLdapConfig(full)).toEqual(expected)
  })

  it('resolves relative file paths against the config file\'s folder', () => {
    const parsed = parseLdapConfig({ ...ok, bindPassword: undefined, bindPasswordFile: 'ldap.secret', caFile: '/etc/ssl/ca.pem' }, { baseDir: '/etc/trimswarm' })
    expect(parsed.bindPasswordFile).toBe('/etc/trimswarm/ldap.secret')
    expect(parsed.caFile).toBe('/etc/ssl/ca.pem')
  })

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['unknown field', { ...ok, pasword: 'x' }, 'ldap.pasword'],
    ['no password', { ...ok, bindPassword: undefined }, 'bindPassword'],
    ['both passwords', { ...ok, bindPasswordFile: '/x' }, 'bindPassword'],
    ['http URL', { ...ok, url: 'http://dc1:389' }, 'ldap.url'],
    ['URL with a path', { ...ok, url: 'ldap://dc1:389/dc=x' }, 'ldap.url'],
    ['StartTLS on ldaps', { ...ok, startTLS: true }, 'startTLS'],
    ['user filter without {user}', { ...ok, userFilter: '(uid=alice)' }, 'userFilter'],
    ['unbalanced filter', { ...ok, userFilter: 'uid={user}' }, 'userFilter'],
    ['search without base', { ...ok, groupSource: 'search' }, 'groupSearchBase'],
    ['group filter without {dn} or {user}', { ...ok, groupFilter: '(cn=desk)' }, 'groupFilter'],
    ['unknown group source', { ...ok, groupSource: 'nested' }, 'groupSource'],
    ['zero timeout', { ...ok, timeoutMs: 0 }, 'timeoutMs'],
    ['not an object', [] as unknown as Record<string, unknown>, 'ldap']
  ]
  for (const [what, json, field] of bad) {
    it(`rejects: ${what}`, () => {
      expect(() => parseLdapConfig(json)).toThrow(ValidationError)
      expect(() => parseLdapConfig(json)).toThrow(field)
    })
  }

  it('createLdapAuthenticator validates its init at once', () => {
    expect(() => createLdapAuthenticator({}, { ...ok, url: 'ftp://x' })).toThrow(ValidationError)
  })
})

describe('filter and DN helpers', () => {
  it('escapeFilterValue escapes the RFC 4515 specials and nothing else', () => {
    expect(escapeFilterValue('*)(uid=*')).toBe('\\2a\\29\\28uid=\\2a')
    expect(escapeFilterValue('a\\b\u0000')).toBe('a\\5cb\\00')
    expect(escapeFilterValue('zoë.o\'neil@example.org')).toBe('zoë.o\'neil@example.org')
  })

  it('firstRdnValue reads group names from memberOf DNs (OpenLDAP and AD spellings)', () => {
    expect(firstRdnValue('cn=desk,ou=groups,dc=example,dc=org')).toBe('desk')
    expect(firstRdnValue('CN=Desk Users,OU=Groups,DC=corp,DC=example')).toBe('Desk Users')
    expect(firstRdnValue('CN=Smith\\, J,OU=x')).toBe('Smith, J')
    expect(firstRdnValue('cn=Z\\C3\\BCrich\\2C HQ,dc=x')).toBe('Zürich, HQ')
    expect(firstRdnValue('cn=a+sn=b,dc=x')).toBe('a')
  })
})
