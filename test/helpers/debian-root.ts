/**
 * A fresh Debian 12 root for the package tests (test/package/): `debootstrap
 * --variant=minbase bookworm` from the mirror apt uses on this machine, plus
 * systemd so `systemd-analyze verify --root=` finds the targets the units
 * name. Built once and kept as a tarball under .cache/ (gitignored): later
 * runs only unpack it. Commands run in it by `runInRoot` get their own mount,
 * PID and network namespaces (loopback only), so /proc and /dev are unmounted
 * and every process is gone when the command ends, however it ends.
 */
import { execFile, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'

const ROOT = join(import.meta.dirname, '..', '..')

/** The cached root, as a tarball (numeric owners). Delete it to build a new one. */
export const DEBIAN_ROOT_CACHE = join(ROOT, '.cache', 'package-test', 'debian-bookworm-minbase-systemd.tar')

/** Why the package tests cannot run here, or undefined when they can. */
export function debianRootUnavailable (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (debootstrap, chroot, mount namespaces)'
  for (const tool of ['debootstrap', 'dpkg-deb', 'unshare', 'chroot', 'ip', 'systemd-analyze']) {
    if (!['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some(d => existsSync(join(d, tool)))) return `${tool} is not installed (scripts/install-deps.sh installs it)`
  }
  return undefined
}

/**
 * The Debian mirror apt uses here (TRIMSWARM_DEBIAN_MIRROR overrides): the first
 * source, one-line or deb822, that serves bookworm's main component.
 */
export function aptMirror (): string {
  if (process.env.TRIMSWARM_DEBIAN_MIRROR != null) return process.env.TRIMSWARM_DEBIAN_MIRROR
  const dir = '/etc/apt/sources.list.d'
  const files = ['/etc/apt/sources.list', ...(existsSync(dir) ? readdirSync(dir).map(f => join(dir, f)) : [])].filter(f => existsSync(f))
  for (const file of files) {
    const text = readFileSync(file, 'utf8')
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string): string[] => (new RegExp(`^${name}:\\s*(.*)$`, 'mi').exec(stanza)?.[1] ?? '').split(/\s+/).filter(Boolean)
        if (field('Types').includes('deb') && field('Suites').includes('bookworm') && field('Components').includes('main') && field('URIs')[0] != null) return field('URIs')[0]
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s+.*\bmain\b/.exec(line.trim())
        if (m != null) return m[1]
      }
    }
  }
  return 'http://deb.debian.org/debian'
}

async function sh (cmd: string, args: string[]): Promise<void> {
  await promisify(execFile)(cmd, args, { maxBuffer: 64 * 1024 * 1024 })
}

/** Unpacks a fresh root into `dir` (made if missing), building and caching it first when there is no cache. */
export async function makeDebianRoot (dir: string): Promise<{ cached: boolean }> {
  const cached = existsSync(DEBIAN_ROOT_CACHE)
  if (!cached) {
    await mkdir(dirname(DEBIAN_ROOT_CACHE), { recursive: true })
    const build = await mkdtemp(join(dirname(DEBIAN_ROOT_CACHE), 'build-'))
    try {
      await chmod(build, 0o755) // the root's "/": mkdtemp made it 0700, which only root could cross
      await sh('debootstrap', ['--variant=minbase', '--include=systemd', 'bookworm', build, aptMirror()])
      await sh('tar', ['-C', build, '--numeric-owner', '-cpf', `${build}.tar`, '.'])
      await rename(`${build}.tar`, DEBIAN_ROOT_CACHE) // atomic: a concurrent run sees no half-written cache
    } finally {
      await rm(build, { recursive: true, force: true })
      await rm(`${build}.tar`, { force: true })
    }
  }
  await mkdir(dir, { recursive: true })
  await sh('tar', ['-C', dir, '--numeric-owner', '-xpf', DEBIAN_ROOT_CACHE])
  await chmod(dir, 0o755)
  return { cached }
}

/** Runs `command` chrooted in `root`, in new mount, PID and network namespaces (loopback up, /proc and /dev mounted). */
export async function runInRoot (root: string, command: string[], timeoutMs: number): Promise<{ code: number | null, output: string }> {
  const setup = 'ip link set lo up && mount --bind /dev "$0/dev" && mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
  const child = spawn('unshare', ['--mount', '--pid', '--net', '--fork', '--kill-child', 'sh', '-c', setup, root, ...command], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root' }
  })
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  clearTimeout(timer)
  return { code, output }
}
