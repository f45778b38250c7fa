/**
 * Data dir formats (bin/data-format.ts, issue 15): a new dir gets the current
 * format, an older one (no format file: every dir written before formats were
 * recorded) is migrated, a newer one is refused with a one-line message and
 * exit status 65 before anything in it is opened; and a real upgrade: data
 * dirs written by the previous build (git commit PREVIOUS_BUILD, run from a
 * `git archive` of it) are opened by this one, which serves and syncs on.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { AGENT_DATA, COORDINATOR_DATA, DataDirTooNewError, openDataDir } from '../../bin/data-format.ts'
import { DATA_FORMAT_FILE } from '../../protocol/constants.ts'
import { CliError } from '../../bin/cli-support.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'
import { runNode, type CliResult } from '../helpers/cli-process.ts'
import { freePort } from '../helpers/slapd.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const CLI = join(ROOT, 'bin', 'trimswarm.js')
/** The last commit before data dirs recorded their format (format 0). */
const PREVIOUS_BUILD = 'd8ef0edb201e20acc65a3210e85bfad6526be363'
const exec = promisify(execFile)

/** Runs the CLI at `entry` (this checkout's, or an older build's) from the checkout's root. */
async function cli (entry: string, args: string[]): Promise<CliResult> {
  return await runNode([entry, ...args], { cwd: ROOT })
}

async function formatOf (dir: string): Promise<number> {
  return JSON.parse(await readFile(join(dir, DATA_FORMAT_FILE), 'utf8')).format
}

const dirs: TempDir[] = []
afterAll(async () => { for (const d of dirs) await d.cleanup() })
async function newDir (): Promise<string> {
  const d = await tempDir('trimswarm-format-')
  dirs.push(d)
  return d.path
}

describe('openDataDir', () => {
  it('creates a new dir (0700) in the current format; opens it again as is', async () => {
    const dir = join(await newDir(), 'coord')
    expect(await openDataDir(dir, COORDINATOR_DATA)).toEqual({ from: undefined, to: 1 })
    expect(await formatOf(dir)).toBe(1)
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect((await stat(join(dir, DATA_FORMAT_FILE))).mode & 0o777).toBe(0o600)
    expect(await openDataDir(dir, COORDINATOR_DATA)).toEqual({ from: 1, to: 1 })
  })

  it('takes a dir with data but no format file as format 0 and migrates it, keeping its files', async () => {
    const dir = await newDir()
    await writeFile(join(dir, 'agent-id'), 'x\n')
    expect(await openDataDir(dir, AGENT_DATA)).toEqual({ from: 0, to: 1 })
    expect(await formatOf(dir)).toBe(1)
    expect(await readFile(join(dir, 'agent-id'), 'utf8')).toBe('x\n')
  })

  it('refuses a newer format (exit status 65) and leaves the dir untouched; a damaged format file is a clear error', async () => {
    const dir = await newDir()
    const newer = JSON.stringify({ format: 2, writtenBy: 'trimswarm 9.0.0' })
    await writeFile(join(dir, DATA_FORMAT_FILE), newer)
    const err = await openDataDir(dir, COORDINATOR_DATA).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DataDirTooNewError)
    expect((err as DataDirTooNewError).exitCode).toBe(65)
    expect((err as Error).message).toMatch(/is a coordinator data dir of format 2 \(written by trimswarm 9\.0\.0\); this is trimswarm \S+, which reads format 1 at most/)
    expect(await readFile(join(dir, DATA_FORMAT_FILE), 'utf8')).toBe(newer)
    await writeFile(join(dir, DATA_FORMAT_FILE), '{"format": "x"}')
    await expect(openDataDir(dir, COORDINATOR_DATA)).rejects.toThrow(CliError)
    await expect(openDataDir(dir, COORDINATOR_DATA)).rejects.toThrow(/is damaged/)
  })
})

describe('the CLI and a newer data dir', () => {
  it('coordinator, coordinator fsck, agent sync and agent index exit 65 with one line, opening nothing but the agent\'s lock', async () => {
    const dir = await newDir()
    await writeFile(join(dir, DATA_FORMAT_FILE), JSON.stringify({ format: 99 }))
    await mkdir(join(dir, 'meta'))
    const runs = [
      ['coordinator', '--data', dir, '--listen', '127.0.0.1:0', '--log-format', 'text'],
      ['coordinator', 'fsck', '--data', dir],
      ['agent', 'sync', 'ws', '--coordinator', 'http://127.0.0.1:9', '--token-file', join(dir, 'none'), '--data', dir, '--out', join(dir, 'ws.img'), '--no-index', '--log-format', 'text'],
      ['agent', 'index', '--data', dir, '--index', dir]
    ]
    for (const args of runs) {
      const r = await cli(CLI, args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(65)
      expect(r.stderr).toMatch(/^trimswarm (coordinator|agent)[a-z ]*: .* data dir of format 99; this is trimswarm .*"Roll back"\)\n$/)
    }
    // the agent takes its data dir lock first (the check and a migration run under it): lock.db/ and lock
    expect(readdirSync(dir).filter(n => n !== 'lock.db' && n !== 'lock').sort()).toEqual([DATA_FORMAT_FILE, 'meta'])
    expect(readdirSync(join(dir, 'meta'))).toEqual([])
  })
})

/** Whether the previous build is in this clone (a shallow CI clone may lack it). */
async function previousBuildAvailable (): Promise<boolean> {
  return await exec('git', ['cat-file', '-e', `${PREVIOUS_BUILD}^{commit}`], { cwd: ROOT }).then(() => true, () => false)
}

describe.skipIf(!await previousBuildAvailable())(`upgrade from the previous build${await previousBuildAvailable() ? '' : ` (skipped: commit ${PREVIOUS_BUILD.slice(0, 7)} is not in this clone)`}`, () => {
  it('this build opens the coordinator and agent data dirs the previous build wrote, serves them and syncs on', async () => {
    const dir = await newDir()
    const old = join(dir, 'previous')
    await mkdir(old)
    const archive = await exec('sh', ['-c', `git archive ${PREVIOUS_BUILD} bin coordinator peer-agent protocol chunker package.json | tar -x -C "${old}"`], { cwd: ROOT })
    expect(archive.stderr).toBe('')
    await symlink(join(ROOT, 'node_modules'), join(old, 'node_modules'))
    const oldCli = join(old, 'bin', 'trimswarm.js')
    const coordDir = join(dir, 'coord')
    const agentDir = join(dir, 'agent')
    const out = join(dir, 'ws.img')
    const v1 = seededBytes(31, 4 * 1048576)
    const v2 = new Uint8Array(4 * 1048576)
    v2.set(v1.subarray(0, 3 * 1048576))
    v2.set(seededBytes(32, 1048576), 3 * 1048576)
    await writeFile(join(dir, 'v1.img'), v1)
    await writeFile(join(dir, 'v2.img'), v2)

    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const admin = ['--coordinator', url, '--token-file', join(coordDir, 'admin.token')]
    const sync = ['agent', 'sync', 'ws', '--coordinator', url, '--token-file', join(dir, 'agent.token'), '--data', agentDir, '--out', out, '--no-index', '--no-mdns', '--no-lan', '--linger', '0']

    // the previous build writes both data dirs: coordinator with v1 published, agent with v1 synced
    let coordinator = await startCoordinator(oldCli, coordDir, port)
    try {
      expect((await cli(oldCli, ['publish', join(dir, 'v1.img'), '--image', 'ws', '--version', 'v1', ...admin])).code).toBe(0)
      expect((await cli(oldCli, ['policy', 'set', 'branch', '--images', 'ws', ...admin])).code).toBe(0)
      const token = await cli(oldCli, ['token', 'create', '--group', 'branch', '--json', ...admin])
      await writeFile(join(dir, 'agent.token'), JSON.parse(token.stdout).token + '\n')
      const first = await cli(oldCli, sync)
      expect(first.code, first.stderr).toBe(0)
    } finally {
      await stopCoordinator(coordinator)
    }
    expect(existsSync(join(coordDir, DATA_FORMAT_FILE)) || existsSync(join(agentDir, DATA_FORMAT_FILE))).toBe(false)

    // this build: opens both, says it upgraded them, serves v1 and publishes and syncs v2 with the same keys
    coordinator = await startCoordinator(CLI, coordDir, port)
    try {
      expect(coordinator.stderr()).toMatch(`coordinator data dir ${coordDir}: upgraded from format 0 to 1`)
      expect(await formatOf(coordDir)).toBe(1)
      expect((await cli(CLI, ['publish', join(dir, 'v2.img'), '--image', 'ws', '--version', 'v2', ...admin])).code).toBe(0)
      const second = await cli(CLI, sync)
      expect(second.code, second.stderr).toBe(0)
      expect(second.stderr).toMatch(`agent data dir ${agentDir}: upgraded from format 0 to 1`)
      expect(second.stderr).not.toMatch(/pinned coordinator key/) // the key pinned by the previous build is kept
      expect(await formatOf(agentDir)).toBe(1)
      expect(Buffer.compare(await readFile(out), v2)).toBe(0)
    } finally {
      await stopCoordinator(coordinator)
    }
  }, 240_000)
})

interface RunningCoordinator { child: ChildProcess, stderr: () => string }

async function startCoordinator (entry: string, dataDir: string, port: number): Promise<RunningCoordinator> {
  const child = spawn(process.execPath, [entry, 'coordinator', '--data', dataDir, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('listening on')) resolve() })
    child.on('exit', (code) => { reject(new Error(`coordinator exited with ${code}: ${err}`)) })
  })
  return { child, stderr: () => err }
}

async function stopCoordinator (c: RunningCoordinator): Promise<void> {
  if (c.child.exitCode != null) return
  c.child.kill('SIGTERM')
  await new Promise(resolve => c.child.once('close', resolve))
}
