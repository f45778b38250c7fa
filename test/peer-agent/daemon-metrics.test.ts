/**
 * The agent daemon's own /metrics (`agent run --metrics-listen HOST:PORT`)
 * and its JSON log lines (`--log-format json`): a real daemon process syncing
 * from a real coordinator; promtool (Debian package prometheus) checks the
 * exposition.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAgentLogger, defaultAgentLogFormat } from '../../peer-agent/logger.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'
import { promtoolCheck, sampleValue } from '../helpers/promtool.ts'
import { freePort } from '../helpers/slapd.ts'
import { runAgent, spawnAgent, startTestCoordinator, type TestCoordinator } from './harness.ts'

describe('agent log formats', () => {
  it('writes text lines as before, or JSON lines with fields; JSON under systemd by default', () => {
    const lines: string[] = []
    const text = createAgentLogger({ write: (l) => lines.push(l) })
    text.info('ws: now v2', { image: 'ws', seconds: 1.5 })
    text.warn('sync failed')
    createAgentLogger({ format: 'json', write: (l) => lines.push(l) }).warn('sync failed', { image: 'ws' })
    createAgentLogger({ quiet: true, write: (l) => lines.push(l) }).info('dropped')
    expect(lines.slice(0, 2)).toEqual(['ws: now v2 image=ws seconds=1.5\n', 'warning: sync failed\n'])
    expect(JSON.parse(lines[2])).toMatchObject({ level: 'warn', msg: 'sync failed', image: 'ws' })
    expect(lines).toHaveLength(3)
    expect(defaultAgentLogFormat({ INVOCATION_ID: 'x' })).toBe('json')
    expect(defaultAgentLogFormat({})).toBe('text')
  })
})

describe('agent run --metrics-listen', () => {
  let tmp: TempDir
  let coord: TestCoordinator

  beforeAll(async () => {
    tmp = await tempDir('trimswarm-daemon-metrics-')
    const image = await makeTestImage(tmp.path, { name: 'ws', sizeMiB: 4, seed: 91 })
    coord = await startTestCoordinator(tmp.path)
    await coord.publish('ws', 'v1', image.path)
  })
  afterAll(async () => {
    await coord?.stop()
    await tmp?.cleanup()
  })

  it('serves syncs, bytes by source, last success, errors and process metrics that promtool accepts; logs JSON lines only', async () => {
    const config = join(tmp.path, 'agent.json')
    await writeFile(config, JSON.stringify({ coordinator: coord.url, tokenFile: coord.tokenFile, dataDir: 'agent-data', images: { ws: 'vm/ws.img' }, indexFolders: [], pollSeconds: 0.5, lanSharing: false }))
    const listen = `127.0.0.1:${await freePort()}`
    const { child, done } = spawnAgent(['run', '--config', config, '--metrics-listen', listen, '--log-format', 'json'])
    let text = ''
    try {
      const until = Date.now() + 60_000
      while (!/^trimswarm_agent_syncs_total\{image="ws",result="current"\} [1-9]/m.test(text)) {
        if (child.exitCode != null || Date.now() > until) throw new Error(`no up-to-date sync reported: ${text}`)
        await new Promise(resolve => setTimeout(resolve, 200))
        text = await fetch(`http://${listen}/metrics`).then(async res => await res.text()).catch(() => '')
      }
    } finally {
      child.kill('SIGTERM')
    }
    const r = await done
    expect(r.code, r.stderr).toBe(0)

    const check = await promtoolCheck(text)
    expect(check.output).toBe('')
    expect(check.code).toBe(0)
    const value = (series: string): number => sampleValue(text, series)
    expect(value('trimswarm_agent_syncs_total{image="ws",result="updated"}')).toBe(1)
    expect(value('trimswarm_agent_sync_bytes_total{image="ws",source="origin"}')).toBeGreaterThan(0)
    expect(value('trimswarm_agent_sync_bytes_total{image="ws",source="peers"}')).toBe(0)
    expect(value('trimswarm_agent_last_success_timestamp_seconds{image="ws"}')).toBeGreaterThan(Date.now() / 1000 - 120)
    expect(value('trimswarm_agent_errors_total{stage="sync"}')).toBe(0)
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(text).toMatch(/^trimswarm_build_info\{version="[^"]+",node="v\d+/m)

    const lines = r.stderr.trim().split('\n').map(l => JSON.parse(l))
    expect(lines.find(l => l.msg.startsWith('metrics at'))?.metricsUrl).toBe(`http://${listen}/metrics`)
    expect(lines.find(l => l.image === 'ws' && l.version === 'v1')).toMatchObject({ level: 'info', bytes: { local: 0, peers: 0 } })
  })

  it('refuses a bad --metrics-listen and --log-format with a one-line usage error', async () => {
    const config = join(tmp.path, 'agent.json')
    for (const args of [['--metrics-listen', 'localhost'], ['--log-format', 'xml']]) {
      const r = await runAgent(['run', '--config', config, ...args])
      expect(r.code).toBe(2)
      expect(r.stderr.split('\n')[0]).toMatch(/^trimswarm agent run: --(metrics-listen|log-format)/)
    }
  })
})
