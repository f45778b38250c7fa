/**
 * `trimswarm coordinator` as a real process (its own memory, its own event
 * loop), for tests that kill it or measure it: started on 127.0.0.1, resolved
 * once it prints the URL it listens on.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ADMIN_TOKEN_FILE } from '../../coordinator/constants.ts'

/** The CLI entry point. */
export const CLI = join(import.meta.dirname, '..', '..', 'bin', 'trimswarm.js')

/** A running coordinator process. */
export interface CoordinatorProcess {
  child: ChildProcess
  url: string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** What it wrote to stderr so far (its log). */
  stderr: () => string
  /** The admin token from its data dir. */
  adminToken: () => Promise<string>
  /** SIGTERM, then wait for the exit. */
  stop: () => Promise<void>
}

/** Options of startCoordinatorProcess. */
export interface CoordinatorProcessOptions {
  /** Port (0: any free port). */
  port?: number
  /** Written to DATA.json and passed with --config. */
  config?: Record<string, unknown>
  logLevel?: string
}

/** Starts `trimswarm coordinator --data dataDir` and waits until it listens. */
export async function startCoordinatorProcess (dataDir: string, options: CoordinatorProcessOptions = {}): Promise<CoordinatorProcess> {
  const args = [CLI, 'coordinator', '--data', dataDir, '--listen', `127.0.0.1:${options.port ?? 0}`, '--log-level', options.logLevel ?? 'error']
  if (options.config != null) {
    const file = `${dataDir}.json`
    await writeFile(file, JSON.stringify(options.config))
    args.push('--config', file)
  }
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  let out = ''
  let err = ''
  child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /coordinator listening on ([^\s"]+)/.exec(out)
      if (m != null) resolve(m[1])
    })
    void exited.then(e => reject(new Error(`coordinator exited (${e.code ?? e.signal}) before listening: ${err}`)))
  })
  return {
    child,
    url,
    exited,
    stderr: () => err,
    adminToken: async () => (await readFile(join(dataDir, ADMIN_TOKEN_FILE), 'utf8')).trim(),
    stop: async () => {
      if (child.exitCode == null && child.signalCode == null) child.kill('SIGTERM')
      await exited
    }
  }
}

/** A process's memory from /proc (Linux), in bytes: resident now (VmRSS) and its peak (VmHWM). */
export async function processMemory (pid: number): Promise<{ rss: number, peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}
