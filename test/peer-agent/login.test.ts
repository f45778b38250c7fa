/** `agent sync --user U --password-file F`: login against a real slapd behind a real coordinator. */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { startTestSlapd, testLdapInit, TEST_LDAP_PASSWORDS, type TestSlapd } from '../helpers/slapd.ts'
import { OPEN_POLICY, runAgent, startTestCoordinator, type TestCoordinator } from './harness.ts'

let tmp: TempDir
let slapd: TestSlapd
let coord: TestCoordinator
let img: TestImage

beforeAll(async () => {
  ;[slapd, tmp] = await Promise.all([startTestSlapd(), tempDir('trimswarm-agent-login-')])
  img = await makeTestImage(tmp.path, { name: 'desk', sizeMiB: 4, seed: 41 })
  coord = await startTestCoordinator(tmp.path, { config: { ldap: testLdapInit(slapd) } })
  // alice is in group desk (test/fixtures/ldap); that group may fetch image "desk" only
  const res = await fetch(`${coord.url}/v1/policies/desk`, { method: 'PUT', headers: { authorization: `Bearer ${coord.coordinator.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...OPEN_POLICY, images: ['desk'] }) })
  expect(res.status).toBe(200)
  await coord.publish('desk', 'v1', img.path)
  await coord.publish('lab', 'v1', img.path)
})
afterAll(async () => {
  await coord?.stop()
  await slapd?.stop()
  await tmp?.cleanup()
})

describe('agent sync with a directory user', () => {
  it('logs in with the password file and syncs what the user\'s group may fetch', async () => {
    const pw = join(tmp.path, 'alice.pw')
    await writeFile(pw, TEST_LDAP_PASSWORDS.alice + '\n', { mode: 0o600 })
    const base = ['--coordinator', coord.url, '--user', 'alice', '--password-file', pw, '--data', join(tmp.path, 'a'), '--json', '--no-index', '--retries', '2', '--retry-delay', '50']
    const r = await runAgent(['sync', 'desk@v1', ...base, '--out', join(tmp.path, 'a-out', 'desk.img')])
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(join(tmp.path, 'a-out', 'desk.img'))).toBe(await b3sumFile(img.path))

    // an image the policy does not give her: a clear refusal, nothing written
    const denied = await runAgent(['sync', 'lab@v1', ...base, '--out', join(tmp.path, 'a-out', 'lab.img')])
    expect(denied.code).toBe(3)
    expect(denied.stderr).toMatch(/lab/)
    expect(denied.stderr).not.toMatch(/\n\s+at /)
  })

  it('fails with a clear message on a wrong password, without retrying', async () => {
    const pw = join(tmp.path, 'wrong.pw')
    await writeFile(pw, 'not-her-password\n')
    const r = await runAgent(['sync', 'desk@v1', '--coordinator', coord.url, '--user', 'alice', '--password-file', pw, '--data', join(tmp.path, 'b'), '--out', join(tmp.path, 'b-out', 'desk.img'), '--no-index', '--retries', '3', '--retry-delay', '50'])
    expect(r.code).toBe(3)
    expect(r.stderr).not.toMatch(/retrying/)
    expect(r.stderr).toMatch(/password|credentials|unauthori[sz]ed/i)
  })
})
