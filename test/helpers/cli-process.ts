/**
 * The CLI as a user runs it, for tests: one command to completion, or a
 * `trimswarm coordinator` process that the test may kill (kill -9 tests).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

/** The checkout's root. */
export const ROOT = join(import.meta.dirname, '..', '..')

/** bin/trimswarm.js. */
export const CLI = join(ROOT, 'bin', 'trimswarm.js')

/** bench/main.ts, what `npm run bench` runs. */
export const BENCH = join(ROOT, 'bench', 'main.ts')

/** Exit code (null when killed by a signal) and output of one process. */
export interface CliResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** How to run a process: variables added to this process's environment, working dir, user, time limit. */
export interface RunOptions {
  env?: Record<string, string>
  cwd?: string
  uid?: number
  gid?: number
  /** Milliseconds before the process is killed (SIGTERM). */
  timeout?: number
}

/** Starts `node ...args` (this test's Node); `done` resolves once it has exited and its output is read (no size limit). */
export function spawnNode (args: string[], options: RunOptions = {}): { child: ChildProcess, done: Promise<CliResult> } {
  const { env, ...rest } = options
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, ...rest })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => { resolve({ code, signal, stdout, stderr }) })
  })
  return { child, done }
}

/** Runs `node ...args` to completion (a failure is a result, not a throw). */
export async function runNode (args: string[], options: RunOptions = {}): Promise<CliResult> {
  return await spawnNode(args, options).done
}

/** Runs the CLI (`trimswarm ...args`) as a real process; resolves to its exit code and output (a failure is a result, not a throw). */
export async function cli (args: string[], options: RunOptions = {}): Promise<CliResult> {
  return await runNode([CLI, ...args], options)
}

/** Runs the CLI and resolves to its stdout; throws with its stderr when it exits non-zero (set-up steps that must work). */
export async function cliOk (args: string[], options: RunOptions = {}): Promise<string> {
  const r = await cli(args, options)
  if (r.code !== 0) throw new Error(`trimswarm ${args.slice(0, 2).join(' ')} exited with ${r.code ?? r.signal}: ${r.stderr}`)
  return r.stdout
}

/** Runs a benchmark as `npm run bench -- ...args` does. */
export async function bench (args: string[], options: RunOptions = {}): Promise<CliResult> {
  return await runNode([BENCH, ...args], options)
}

/** A running `trimswarm coordinator` process; `stderr()` is what it has written there so far. */
export interface CoordinatorProcess {
  child: ChildProcess
  url: string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  stderr: () => string
}

/** Starts `trimswarm coordinator --data DIR --listen 127.0.0.1:PORT --log-level error ...extra` and waits until it listens. */
export async function startCoordinatorProcess (dataDir: string, port: number, extra: string[] = []): Promise<CoordinatorProcess> {
  const child = spawn(process.execPath, [CLI, 'coordinator', '--data', dataDir, '--listen', `127.0.0.1:${port}`, '--log-level', 'error', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
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
  return { child, url, exited, stderr: () => err }
}

/** A process's memory from /proc (Linux), in bytes: resident now (VmRSS) and its peak (VmHWM). */
export async function processMemory (pid: number): Promise<{ rss: number, peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}
