/**
 * What an operator sees of a running `trimswarm coordinator` process (the real
 * CLI, JSON log format): the /metrics exposition after a publish and an
 * agent's sync passes `promtool check metrics` (Debian package prometheus)
 * and carries the families docs/OPERATIONS.md promises; /metrics needs a
 * token; every output line is JSON; the first start names the admin token's
 * file and never prints the token; request lines carry a request id (also the
 * X-Request-Id header) and the client's IP.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseCoordinatorConfig } from '../../coordinator/config.ts'
import { MAX_SYNC_BYTES_SERIES } from '../../coordinator/constants.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { createMetrics } from '../../coordinator/metrics.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'
import { promtoolCheck, sampleValue } from '../helpers/promtool.ts'
import { freePort } from '../helpers/slapd.ts'
import { CLI, OPEN_POLICY, runAgent } from '../peer-agent/harness.ts'

describe('a running coordinator: metrics and logs', () => {
  let tmp: TempDir
  let proc: ChildProcess
  let stdout = ''
  let stderr = ''
  let url: string
  let adminToken: string
  let metricsToken: string
  let agentToken: string

  const admin = async (method: string, path: string, body?: unknown): Promise<any> => {
    const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
    return await res.json()
  }
  const scrape = async (token?: string): Promise<Response> =>
    await fetch(url + '/metrics', { headers: token != null ? { authorization: `Bearer ${token}` } : {} })

  beforeAll(async () => {
    tmp = await tempDir('trimswarm-ops-')
    metricsToken = randomBytes(32).toString('hex')
    await writeFile(join(tmp.path, 'metrics.token'), metricsToken + '\n', { mode: 0o600 })
    await writeFile(join(tmp.path, 'coordinator.json'), JSON.stringify({ metrics: { tokenFile: 'metrics.token' } }))
    const listen = `127.0.0.1:${await freePort()}`
    url = `http://${listen}`
    proc = spawn(process.execPath, [CLI, 'coordinator', '--data', join(tmp.path, 'data'), '--listen', listen, '--config', join(tmp.path, 'coordinator.json'), '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const until = Date.now() + 30_000
    while (!stdout.includes('coordinator listening on')) {
      if (proc.exitCode != null || Date.now() > until) throw new Error(`coordinator did not start: ${stdout} ${stderr}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    adminToken = (await readFile(join(tmp.path, 'data', 'admin.token'), 'utf8')).trim()

    // a publish and an agent's sync, so every family has values
    await admin('PUT', '/v1/policies/branch', OPEN_POLICY)
    agentToken = (await admin('POST', '/v1/tokens', { group: 'branch', name: 'ops-test' })).token
    await writeFile(join(tmp.path, 'agent.token'), agentToken + '\n', { mode: 0o600 })
    const image = await makeTestImage(tmp.path, { name: 'ws', sizeMiB: 4, seed: 161 })
    await createPublishClient({ coordinator: url, token: adminToken }).publish(image.path, { image: 'ws', version: 'v1' })
    const sync = await runAgent(['sync', 'ws', '--coordinator', url, '--token-file', join(tmp.path, 'agent.token'), '--data', join(tmp.path, 'agent'),
      '--out', join(tmp.path, 'synced.img'), '--site', 'branch-1', '--no-index', '--no-lan', '--linger', '0', '--json'])
    expect(sync.code, sync.stderr).toBe(0)
  })
  afterAll(async () => {
    if (proc?.exitCode == null) {
      proc?.kill('SIGTERM')
      await new Promise(resolve => proc.once('close', resolve))
    }
    await tmp?.cleanup()
  })

  it('serves /metrics that promtool accepts, with HELP and the promised families', async () => {
    const res = await scrape(metricsToken)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await res.text()
    const check = await promtoolCheck(text)
    expect(check.output).toBe('')
    expect(check.code).toBe(0)

    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'))
    expect(text).toContain(`trimswarm_build_info{version="${version}",node="${process.version}"} 1`)
    const value = (series: string): number => sampleValue(text, series)
    expect(value('trimswarm_sync_bytes_total{site="branch-1",image="ws",source="origin"}')).toBeGreaterThan(0)
    expect(value('trimswarm_sync_bytes_total{site="branch-1",image="ws",source="local"}')).toBe(0)
    expect(value('trimswarm_origin_sent_bytes_total{kind="manifest"}')).toBeGreaterThan(0)
    const originKinds = ['blocks', 'delta', 'segment'].map(kind => value(`trimswarm_origin_sent_bytes_total{kind="${kind}"}`))
    expect(originKinds.reduce((a, b) => a + b)).toBeGreaterThan(0)
    expect(value('trimswarm_versions_committed_total')).toBe(1)
    expect(value('trimswarm_events_total{type="sync.completed"}')).toBe(1)
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0)
    // every family has HELP and TYPE, and no name carries a byte kind any more
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map(m => m[1]))
    for (const f of families) expect(text, f).toMatch(new RegExp(`^# HELP ${f} \\S`, 'm'))
    expect(text).not.toMatch(/^trimswarm_image_/m)
  })

  it('refuses /metrics without a token or with a machine token (401 JSON), serves the metrics and the admin token', async () => {
    for (const token of [undefined, agentToken, 'x'.repeat(64)]) {
      const res = await scrape(token)
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/)
      expect((await res.json()).error.name).toBe('UnauthorizedError')
    }
    expect((await scrape(metricsToken)).status).toBe(200)
    expect((await scrape(adminToken)).status).toBe(200)
  })

  it('is scraped by a real Prometheus with the scrape config of docs/OPERATIONS.md and a bearer token file', async () => {
    const doc = await readFile(new URL('../../docs/OPERATIONS.md', import.meta.url), 'utf8')
    const yaml = /```yaml\n# prometheus\.yml[^\n]*\n([\s\S]*?)```/.exec(doc)?.[1]
    expect(yaml).toBeDefined()
    // the documented config, pointed at this coordinator (plain HTTP here) and this token file
    const tokenFile = join(tmp.path, 'prometheus-metrics.token')
    await writeFile(tokenFile, metricsToken + '\n')
    const config = `global:\n  scrape_interval: 1s\n` + yaml!
      .replace('scheme: https', 'scheme: http')
      .replace('/etc/prometheus/trimswarm-metrics.token', tokenFile)
      .replace("'coord.example.org:8440'", `'${new URL(url).host}'`)
    expect(config).toContain(tokenFile)
    await writeFile(join(tmp.path, 'prometheus.yml'), config)
    const web = `127.0.0.1:${await freePort()}`
    const prom = spawn('prometheus', [`--config.file=${join(tmp.path, 'prometheus.yml')}`, `--storage.tsdb.path=${join(tmp.path, 'prometheus')}`, `--web.listen-address=${web}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let promLog = ''
    prom.stderr!.setEncoding('utf8').on('data', (d: string) => { promLog += d })
    try {
      const query = async (q: string): Promise<any[]> => {
        const res = await fetch(`http://${web}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => undefined)
        return res?.ok === true ? (await res.json()).data.result : []
      }
      const until = Date.now() + 30_000
      let up: any[] = []
      while ((up = await query('up{job="trimswarm-coordinator"}')).length === 0 || up[0].value[1] !== '1') {
        if (prom.exitCode != null || Date.now() > until) throw new Error(`Prometheus did not scrape the coordinator: ${JSON.stringify(up)} ${promLog.slice(-2000)}`)
        await new Promise(resolve => setTimeout(resolve, 250))
      }
      const info = await query('trimswarm_build_info')
      expect(info[0].metric.job).toBe('trimswarm-coordinator')
    } finally {
      prom.kill('SIGTERM')
      await new Promise(resolve => prom.once('close', resolve))
    }
  })

  it('writes only JSON lines; the first start names the admin token file, never the token', async () => {
    const res = await fetch(url + '/healthz')
    const requestId = res.headers.get('x-request-id')
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/)
    await new Promise(resolve => setTimeout(resolve, 200)) // the log line is written after the response
    expect(stdout + stderr).not.toContain(adminToken)
    const lines = [...stdout.trim().split('\n'), ...stderr.trim().split('\n')].map(l => JSON.parse(l))
    const first = lines.find(l => String(l.msg).startsWith('first start'))
    expect(first.adminTokenFile).toBe(join(tmp.path, 'data', 'admin.token'))
    const logged = lines.find(l => l.msg === 'request' && l.requestId === requestId)
    expect(logged).toMatchObject({ method: 'GET', route: '/healthz', status: 200, ip: '127.0.0.1' })
  })
})

describe('who may read /metrics (config metrics)', () => {
  let tmp: TempDir
  beforeAll(async () => { tmp = await tempDir('trimswarm-metrics-access-') })
  afterAll(async () => { await tmp?.cleanup() })

  it('is closed by default (401 JSON), open with metrics.public: true', async () => {
    for (const [name, config, status] of [['closed', {}, 401], ['open', { metrics: { public: true } }, 200]] as const) {
      const coord = createCoordinator({ dataDir: join(tmp.path, name), serve: false, logLevel: 'silent', config })
      await coord.start()
      try {
        const res = await coord.app.request('/metrics')
        expect(res.status).toBe(status)
        if (status === 401) expect((await res.json()).error.name).toBe('UnauthorizedError')
        else expect(await res.text()).toMatch(/^# HELP /)
        expect((await coord.app.request('/metrics', { headers: { authorization: `Bearer ${coord.adminToken}` } })).status).toBe(200)
      } finally {
        await coord.stop()
      }
    }
  })

  it('refuses a metrics config that cannot be right: public with a token file, a short or missing token file', async () => {
    expect(() => parseCoordinatorConfig({ metrics: { public: true, tokenFile: 'm.token' } })).toThrow(/exclude each other/)
    await writeFile(join(tmp.path, 'short.token'), 'secret\n')
    for (const [file, why] of [['short.token', /at least 32 characters/], ['missing.token', /cannot read/]] as const) {
      const coord = createCoordinator({ dataDir: join(tmp.path, `bad-${file}`), serve: false, logLevel: 'silent', config: parseCoordinatorConfig({ metrics: { tokenFile: file } }, tmp.path) })
      await expect(coord.start()).rejects.toThrow(why)
    }
  })
})

describe('sync byte series', () => {
  it('counts at most 10,000 site/image pairs of sync bytes, then counts what it dropped', async () => {
    const stats = { bytesServed: { manifest: 0, blocks: 0, chunk: 0, delta: 0 }, blockBatchRawBytes: 0, blockBatches: 0, blockBatchesFailed: 0, blockBatchesWaiting: 0, blockBatchesStalled: 0, corruptChunkReads: 0, chunksUploaded: 0, bytesUploaded: 0, uploadsRejected: 0, versionsCommitted: 0, deltaPacksBuilt: 0, deltaPackBuildFailures: 0, deltaPacksPending: 0 }
    const metrics = createMetrics({ imageStats: () => stats }, { version: 'test' })
    expect(MAX_SYNC_BYTES_SERIES).toBe(10_000)
    for (let i = 0; i < MAX_SYNC_BYTES_SERIES + 5; i++) metrics.syncBytes(`site-${i}`, 'ws', { local: 1, peers: 2, origin: 3 })
    metrics.syncBytes('site-0', 'ws', { local: 1, peers: 2, origin: 3 }) // a known pair still counts
    const text = await metrics.render()
    expect(text.match(/^trimswarm_sync_bytes_total\{/gm)).toHaveLength(MAX_SYNC_BYTES_SERIES * 3)
    expect(text).toContain('trimswarm_sync_bytes_total{site="site-0",image="ws",source="origin"} 6')
    expect(text).not.toContain(`site="site-${MAX_SYNC_BYTES_SERIES}"`)
    expect(text).toMatch(/^trimswarm_sync_bytes_dropped_total 5$/m)
  })
})

describe('audit lines and the log level', () => {
  let tmp: TempDir
  beforeAll(async () => { tmp = await tempDir('trimswarm-audit-level-') })
  afterAll(async () => { await tmp?.cleanup() })

  it('writes audit lines even at --log-level warn, which drops the request lines', async () => {
    const listen = `127.0.0.1:${await freePort()}`
    const child = spawn(process.execPath, [CLI, 'coordinator', '--data', join(tmp.path, 'data'), '--listen', listen, '--log-level', 'warn', '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d })
    try {
      const until = Date.now() + 30_000
      while (!out.includes('coordinator listening on')) {
        if (child.exitCode != null || Date.now() > until) throw new Error(`coordinator did not start: ${out} ${err}`)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
      const token = (await readFile(join(tmp.path, 'data', 'admin.token'), 'utf8')).trim()
      const res = await fetch(`http://${listen}/v1/policies/branch`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(OPEN_POLICY) })
      expect(res.status).toBe(200)
      await new Promise(resolve => setTimeout(resolve, 200))
    } finally {
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('close', resolve))
    }
    const lines = err.trim().split('\n').map(l => JSON.parse(l))
    expect(lines.filter(l => l.msg === 'audit')).toMatchObject([{ action: 'policy.set', target: { group: 'branch' }, before: null, after: OPEN_POLICY }])
    expect(lines.filter(l => l.msg === 'request')).toEqual([])
  })
})

describe('JSON log format: failures too', () => {
  let tmp: TempDir
  beforeAll(async () => { tmp = await tempDir('trimswarm-json-fail-') })
  afterAll(async () => { await tmp?.cleanup() })

  it('ends a failed coordinator or agent start with a JSON error line, not a plain one', async () => {
    await writeFile(join(tmp.path, 'bad.json'), JSON.stringify({ trustedProxies: ['proxy.example'] }))
    const runs = [
      [CLI, 'coordinator', '--data', join(tmp.path, 'data'), '--config', join(tmp.path, 'bad.json'), '--log-format', 'json'],
      [CLI, 'agent', 'run', '--config', join(tmp.path, 'missing.json'), '--log-format', 'json']
    ]
    for (const args of runs) {
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d })
      child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d })
      const code = await new Promise(resolve => child.once('close', resolve))
      expect(code, out).toBe(1)
      const lines = out.trim().split('\n').map(l => JSON.parse(l))
      expect(lines.at(-1)).toMatchObject({ level: 'error', msg: expect.stringMatching(/proxy\.example|missing\.json/) })
    }
  })
})
