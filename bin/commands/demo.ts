/**
 * `trimswarm demo`: the whole system on 127.0.0.1 through its public CLI, as
 * separate processes: a coordinator on the embedded default (level + a local
 * directory block store), an image built from this machine's own /usr/bin plus
 * fresh data, published in two versions, and agents syncing it cold, with Trim
 * Transfer, and as an update. Ends with a table of bytes by source.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { hashBytes } from '../../chunker/blake3.ts'
import { toHex } from '../../protocol/block-id.ts'
import { CliError, UsageError, type Command } from '../cli-support.ts'

// the entry script that runs this command: bin/trimswarm.js in a checkout and in an install alike
const cli = resolve(process.argv[1])

const usage = `Usage: trimswarm demo [--dir DIR] [--keep] [--host-folder DIR] [--mib N]

Runs trimswarm end to end on 127.0.0.1, each part a separate process of this CLI:
  1. a coordinator on the embedded default (level + a directory block store) in DIR
  2. image "demo" version 1: an ext4 image holding files copied from --host-folder
     (default /usr/bin: this machine's own files, so Trim Transfer finds them) plus
     fresh random data no machine has; published with \`trimswarm publish\`
  3. agents syncing it: "cold" (no host index) and "trim" (indexes --host-folder)
  4. version 2 (more files, more new data) published; both agents update
Every output is checked against the published image (BLAKE3 of the whole file), and
a table shows bytes by source: local disk, LAN peers, WAN origin.

  --dir DIR          work directory (default: a new temporary one)
  --keep             keep the work directory (default: removed at the end)
  --host-folder DIR  where the image's "operating system" files come from (default /usr/bin)
  --mib N            MiB of host files copied into version 1 (default 48)
  -h, --help         this text`

interface SyncSummary {
  version: string
  bytes: { local: number, peers: number, origin: number }
  seconds: number
}

interface Row {
  agent: string
  step: string
  summary: SyncSummary
  verified: boolean
}

/** Runs this CLI as a child process; resolves with stdout, rejects with stderr on failure. */
async function run (args: string[], options: { input?: string } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', reject)
    child.on('close', code => {
      if (code === 0) resolve(out)
      else reject(new CliError(`\`trimswarm ${args.slice(0, 2).join(' ')}\` failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' / ')}`))
    })
    child.stdin.end(options.input ?? '')
  })
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => { resolve(port) })
    })
  })
}

/**
 * Copies regular files from `from` (sorted by name, so runs are comparable) until
 * `budget` bytes. Symlinks are left out: the host index does not follow them out
 * of the indexed folder, so their targets would not be found there.
 */
async function copyHostFiles (from: string, to: string, skip: number, budget: number): Promise<number> {
  await mkdir(to, { recursive: true })
  const names = (await readdir(from)).sort()
  let copied = 0
  let seen = 0
  for (const name of names) {
    const st = await lstat(join(from, name)).catch(() => undefined)
    if (st == null || !st.isFile() || st.size === 0 || st.size > budget) continue
    seen += st.size
    if (seen <= skip) continue
    try {
      await copyFile(join(from, name), join(to, name))
    } catch {
      continue // unreadable: leave it out
    }
    copied += st.size
    if (copied >= budget) break
  }
  return copied
}

async function mkfs (tree: string, image: string, mib: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, image, `${mib}M`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', e => { reject(new CliError(`mkfs.ext4 is needed to build the demo image (apt-get install e2fsprogs): ${e.message}`)) })
    child.on('close', code => { code === 0 ? resolve() : reject(new CliError(`mkfs.ext4 failed: ${err.trim()}`)) })
  })
}

async function waitHealthy (url: string, child: ReturnType<typeof spawn>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode != null) throw new CliError(`the coordinator exited with code ${child.exitCode}`)
    try {
      const res = await fetch(`${url}/healthz`)
      if (res.ok) return
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new CliError('the coordinator did not become healthy within 20 s')
}

function mib (n: number): string {
  return (n / 1048576).toFixed(1)
}

function table (rows: Row[], imageBytes: Map<string, number>): string {
  const head = ['agent', 'step', 'version', 'local MiB', 'peers MiB', 'origin MiB', 'WAN saved', 'seconds', 'verified']
  const body = rows.map(r => {
    const nonZero = imageBytes.get(r.summary.version) ?? 0
    const saved = nonZero > 0 ? `${(100 * (1 - r.summary.bytes.origin / nonZero)).toFixed(1)} %` : '-'
    return [r.agent, r.step, r.summary.version, mib(r.summary.bytes.local),
      mib(r.summary.bytes.peers), mib(r.summary.bytes.origin), saved, r.summary.seconds.toFixed(1), r.verified ? 'yes' : 'NO']
  })
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(b => b[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  return [line(head), widths.map(w => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}

const command: Command = {
  summary: 'coordinator + agents on 127.0.0.1, end to end',
  usage,
  options: {
    dir: { type: 'string' },
    keep: { type: 'boolean' },
    'host-folder': { type: 'string' },
    mib: { type: 'string' }
  },
  async run ({ values, positionals }) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}\n\n${usage}`)
    const hostFolder = resolve((values['host-folder'] as string | undefined) ?? '/usr/bin')
    const hostMiB = Number((values.mib as string | undefined) ?? '48')
    if (!Number.isInteger(hostMiB) || hostMiB < 1 || hostMiB > 4096) throw new UsageError(`--mib takes a whole number from 1 to 4096\n\n${usage}`)
    const st = await stat(hostFolder).catch(() => undefined)
    if (st?.isDirectory() !== true) throw new CliError(`--host-folder ${hostFolder} is not a readable folder`)

    const dir = values.dir != null ? resolve(values.dir as string) : await mkdtemp(join(tmpdir(), 'trimswarm-demo-'))
    await mkdir(dir, { recursive: true })
    const say = (s: string): void => { process.stderr.write(`demo: ${s}\n`) }
    let coordinator: ReturnType<typeof spawn> | undefined
    const stop = (): void => { coordinator?.kill('SIGTERM') }
    process.once('SIGINT', stop)
    try {
      // 1. coordinator
      const port = await freePort()
      const url = `http://127.0.0.1:${port}`
      coordinator = spawn(process.execPath, [cli, 'coordinator', '--data', join(dir, 'coordinator'), '--listen', `127.0.0.1:${port}`,
        '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] })
      await waitHealthy(url, coordinator)
      const admin = ['--coordinator', url, '--token-file', join(dir, 'coordinator', 'admin.token')]
      say(`coordinator on ${url}, data in ${join(dir, 'coordinator')}`)
      await run(['policy', 'set', 'demo', '--images', 'demo', '--lan-sharing', 'on', ...admin])
      const token = JSON.parse(await run(['token', 'create', '--group', 'demo', '--name', 'demo-branch', '--json', ...admin])) as { token: string }
      await writeFile(join(dir, 'agent.token'), token.token + '\n', { mode: 0o600 })

      // 2. image versions: host files (found locally by Trim Transfer) + fresh data (only the origin has it)
      const images = await buildDemoImages(dir, hostFolder, hostMiB)
      const imageBytes = new Map<string, number>()
      const digests = new Map<string, string>()
      const publish = async (version: string, image: string): Promise<PublishJson> => {
        const p = JSON.parse(await run(['publish', image, '--image', 'demo', '--version', version, '--json', ...admin])) as PublishJson
        imageBytes.set(version, p.nonZeroBytes)
        digests.set(version, await fileDigest(image))
        return p
      }
      const p1 = await publish('1', images[0]) // version 2 is published after the first syncs
      say(`published demo@1: ${mib(p1.nonZeroBytes)} MiB of non-zero data` +
        `, uploaded ${p1.chunksUploaded} of ${p1.chunks} chunks (${mib(p1.bytesUploaded)} MiB)`)

      // 3. agents
      const rows: Row[] = []
      const sync = async (agent: string, step: string, version: string, extra: string[]): Promise<void> => {
        const out = join(dir, agent, 'demo.img')
        const args = ['agent', 'sync', `demo@${version}`, '--coordinator', url, '--token-file', join(dir, 'agent.token'),
          '--data', join(dir, agent, 'data'), '--out', out, '--site', 'demo-branch', '--json', '--quiet', ...extra]
        const summary = JSON.parse(await run(args)) as SyncSummary
        rows.push({ agent, step, summary, verified: await fileDigest(out) === digests.get(version) })
        say(`${agent}: ${step} to demo@${version} done in ${summary.seconds.toFixed(1)} s`)
      }
      await Promise.all([
        sync('cold', 'first install', '1', ['--no-index']),
        sync('trim', 'first install', '1', ['--index', hostFolder])
      ])
      const p2 = await publish('2', images[1])
      say(`published demo@2: uploaded ${p2.chunksUploaded} of ${p2.chunks} chunks (${mib(p2.bytesUploaded)} MiB): only what version 1 lacked`)
      await Promise.all([
        sync('cold', 'update', '2', ['--no-index']),
        sync('trim', 'update', '2', ['--index', hostFolder])
      ])

      process.stdout.write('\n' + table(rows, imageBytes) + '\n\n')
      process.stdout.write('local = blocks found on the agent\'s own disk (host index, older version); peers = LAN peers;\n' +
        'origin = bytes received from the coordinator over the network (compressed); WAN saved = 1 - origin / non-zero image bytes.\n')
      if (rows.some(r => !r.verified)) throw new CliError('an output did not match the published image')
      return 0
    } finally {
      process.removeListener('SIGINT', stop)
      if (coordinator != null && coordinator.exitCode == null) {
        const exited = new Promise(resolve => coordinator!.once('close', resolve))
        coordinator.kill('SIGTERM')
        await exited
      }
      if (values.keep !== true && values.dir == null) await rm(dir, { recursive: true, force: true })
      else process.stderr.write(`demo: kept ${dir}\n`)
    }
  }
}

/** What `publish --json` prints, of what the demo shows. */
interface PublishJson { nonZeroBytes: number, chunksUploaded: number, chunks: number, bytesUploaded: number }

/**
 * Builds the demo's two ext4 images under `dir`: version 1 holds about `hostMiB` MiB of files from
 * `hostFolder` and 6 MiB of fresh data; version 2 a quarter more host files, the same data and 4 MiB more.
 */
async function buildDemoImages (dir: string, hostFolder: string, hostMiB: number): Promise<string[]> {
  const budget = hostMiB * 1048576
  const v1Tree = join(dir, 'tree-1')
  await copyHostFiles(hostFolder, join(v1Tree, 'usr', 'bin'), 0, budget)
  await mkdir(join(v1Tree, 'srv'), { recursive: true })
  await writeFile(join(v1Tree, 'srv', 'app-data-1.bin'), randomBytes(6 * 1048576))
  const v2Tree = join(dir, 'tree-2')
  await copyHostFiles(hostFolder, join(v2Tree, 'usr', 'bin'), 0, budget + budget / 4)
  await mkdir(join(v2Tree, 'srv'), { recursive: true })
  await copyFile(join(v1Tree, 'srv', 'app-data-1.bin'), join(v2Tree, 'srv', 'app-data-1.bin'))
  await writeFile(join(v2Tree, 'srv', 'app-data-2.bin'), randomBytes(4 * 1048576))
  const imageMiB = Math.ceil(hostMiB * 1.25 * 1.3) + 32
  const images = [join(dir, 'demo-1.img'), join(dir, 'demo-2.img')]
  await mkfs(v1Tree, images[0], imageMiB)
  await mkfs(v2Tree, images[1], imageMiB)
  await rm(v1Tree, { recursive: true, force: true })
  await rm(v2Tree, { recursive: true, force: true })
  return images
}

/** BLAKE3 of a whole file, by the same hash the images are verified with. */
async function fileDigest (path: string): Promise<string> {
  return toHex(hashBytes(await readFile(path)))
}

export default command
