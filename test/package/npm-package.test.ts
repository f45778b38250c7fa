/**
 * The npm package (issue 15): `npm pack` (prepack builds dist/) holds only the
 * entry script, the built JavaScript, package.json, README and LICENSE; `npm
 * install -g` of the tarball into a temporary prefix gives a `trimswarm` that
 * runs outside the checkout on plain Node (no type stripping, no
 * devDependencies) and starts a coordinator (native dependencies load). And
 * in the checkout, `npx trimswarm` run by an older system npm/Node prints no
 * EBADENGINE warning (package.json devEngines: the checkout's Node 24 runs it).
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { tempDir, type TempDir } from '../helpers/images.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const VERSION: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version
const NODE_DIR = dirname(process.execPath) // the checkout's Node 24, alone in its folder
const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin'
const exec = promisify(execFile)

/** The system's own Node, when it is older than the checkout's (the case devEngines is for). */
function olderSystemNode (): string | undefined {
  for (const dir of SYSTEM_PATH.split(':')) {
    const node = join(dir, 'node')
    if (existsSync(node) && existsSync(join(dir, 'npx'))) {
      const major = Number(/^v(\d+)/.exec(execFileSync(node, ['--version'], { encoding: 'utf8' }))?.[1])
      if (major < 22) return dir
    }
  }
  return undefined
}

describe('npm package', () => {
  let dir: TempDir | undefined
  afterAll(async () => { await dir?.cleanup() })

  it('packs only what runs, installs with npm install -g and runs outside the checkout', async () => {
    dir = await tempDir('trimswarm-npm-')
    const t0 = performance.now()
    const { stdout } = await exec('npm', ['pack', '--json', '--pack-destination', dir.path], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 })
    const [pack] = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string, files: Array<{ path: string }> }>
    const files = pack.files.map(f => f.path)
    const outside = files.filter(f => !f.startsWith('dist/') && !['bin/trimswarm.js', 'package.json', 'README.md', 'LICENSE'].includes(f))
    expect(outside).toEqual([])
    expect(files.filter(f => /(^|\/)(test|bench|scripts|fixtures)\/|\.ts$/.test(f))).toEqual([])
    expect(files).toContain('dist/bin/main.js')
    expect(files).toContain('dist/bin/assets/console.js')
    // a bundle (scripts/bundle.ts): the CLI's modules in dist/bin/, not one file per source module
    expect(files.filter(f => f.startsWith('dist/') && !f.startsWith('dist/bin/'))).toEqual([])
    expect(files.filter(f => f.endsWith('.js')).length).toBeLessThan(150)
    expect(files).toContain('LICENSE')

    const prefix = join(dir.path, 'prefix')
    await exec('npm', ['install', '-g', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', prefix, join(dir.path, pack.filename)], { cwd: dir.path, maxBuffer: 16 * 1024 * 1024 })
    const t1 = performance.now()
    const env = { PATH: `${join(prefix, 'bin')}:${NODE_DIR}:${SYSTEM_PATH}`, HOME: dir.path }
    const version = await exec('trimswarm', ['--version'], { cwd: dir.path, env })
    expect(version.stdout).toBe(`trimswarm ${VERSION}\n`)
    expect(existsSync(join(prefix, 'lib', 'node_modules', 'trimswarm', 'node_modules', 'typescript'))).toBe(false)

    // a coordinator from the install: level's and BLAKE3's native code load, /healthz answers
    const coordinator = spawn('trimswarm', ['coordinator', '--data', join(dir.path, 'coord'), '--listen', '127.0.0.1:0', '--log-level', 'warn', '--log-format', 'text'], { cwd: dir.path, env, stdio: ['ignore', 'pipe', 'pipe'] })
    try {
      let out = ''
      const url = await new Promise<string>((resolve, reject) => {
        coordinator.stdout.on('data', (d: Buffer) => { out += d.toString(); const m = /listening on (\S+)/.exec(out); if (m != null) resolve(m[1]) })
        coordinator.on('exit', (code) => { reject(new Error(`coordinator exited with ${code}: ${out}`)) })
      })
      expect(await (await fetch(`${url}/healthz`)).json()).toMatchObject({ ok: true, version: VERSION })
    } finally {
      coordinator.kill('SIGTERM')
      await new Promise(resolve => coordinator.once('close', resolve))
    }
    process.stderr.write(`npm-package: pack + install -g ${((t1 - t0) / 1000).toFixed(1)} s\n`)
  }, 300_000)

  const systemNode = olderSystemNode()
  it.skipIf(systemNode == null)(`npx trimswarm in the checkout prints no EBADENGINE warning under an older system Node${systemNode == null ? ' (skipped: no system node older than 22 with npx)' : ''}`, async () => {
    // scripts/install-deps.sh (run by both README commands) makes npm's one-time link of the checkout into its npx
    // cache, the only step where npm checks `engines` against its own older Node; make sure it happened here too
    await exec(join(systemNode!, 'npx'), ['--yes', 'trimswarm', '--version'], { cwd: ROOT, env: { PATH: SYSTEM_PATH, HOME: process.env.HOME ?? '/root' } })
    for (let call = 0; call < 2; call++) {
      const r = await exec(join(systemNode!, 'npx'), ['trimswarm', '--version'], { cwd: ROOT, env: { PATH: SYSTEM_PATH, HOME: process.env.HOME ?? '/root' } })
      expect(r.stdout).toBe(`trimswarm ${VERSION}\n`)
      expect(r.stderr).not.toMatch(/EBADENGINE|EBADDEVENGINES|npm warn/)
    }
  }, 120_000)
})
