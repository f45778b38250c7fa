/**
 * The CLI as a user runs it, for tests: one command to completion, or a
 * `trimswarm coordinator` process that the test may kill (kill -9 tests).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const exec = promisify(execFile)

/** bin/trimswarm.js. */
export const CLI = join(import.meta.dirname, '..', '..', 'bin', 'trimswarm.js')

/** Exit code and output of one CLI run. */
export interface CliResult { code: number, stdout: string, stderr: string }

/** Runs the CLI as a real process; resolves to its exit code and output (a failure is a result, not a throw). */
export async function cli (args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, ...args])
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

/** A running `trimswarm coordinator` process. */
export interface CoordinatorProcess { child: ChildProcess, url: string, exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }> }

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
  return { child, url, exited }
}

/** A process's memory from /proc (Linux), in bytes: resident now (VmRSS) and its peak (VmHWM). */
export async function processMemory (pid: number): Promise<{ rss: number, peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}
