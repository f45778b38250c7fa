/**
 * The benchmark's child processes: each in its own process group (so a
 * shell pipeline dies whole), all tracked, so cleanup kills every one of them
 * by id on exit, Ctrl-C, SIGTERM or a crash.
 */
import { spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { KILL_GRACE_MS } from './constants.ts'

/** A running child. */
export interface Child {
  name: string
  pid: number
  /** Resolves when it exits. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Everything it wrote on stdout (capped). */
  stdout: () => string
  /** The last part of what it wrote on stderr. */
  stderr: () => string
  /** Calls back with each complete stdout line. */
  onLine: (f: (line: string) => void) => void
}

/** How a child is spawned. */
export interface SpawnOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Also append everything it writes on stderr to this file (whole, not only the tail). */
  stderrFile?: string
}

/** Spawns and tracks processes; killAll ends every one still running. */
export interface ProcessManager {
  spawn: (name: string, cmd: string, args: string[], opts?: SpawnOptions) => Child
  /** Runs to completion; rejects with the stderr tail when the exit code is not 0. */
  run: (name: string, cmd: string, args: string[], opts?: SpawnOptions) => Promise<string>
  /** SIGTERM to every live child's group, SIGKILL after the grace period. */
  killAll: () => Promise<void>
  /** Children still running. */
  live: () => Child[]
}

const STDOUT_CAP = 4 * 1024 * 1024
const STDERR_TAIL = 8 * 1024

/** Creates a process manager. */
export function createProcessManager (): ProcessManager {
  const running = new Set<Child>()

  const spawnOne: ProcessManager['spawn'] = (name, cmd, args, opts = {}) => {
    const cp = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let partial = ''
    const lineListeners: Array<(l: string) => void> = []
    cp.stdout.setEncoding('utf8')
    cp.stderr.setEncoding('utf8')
    cp.stdout.on('data', (s: string) => {
      if (out.length < STDOUT_CAP) out += s
      partial += s
      let nl: number
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl)
        partial = partial.slice(nl + 1)
        for (const f of lineListeners) f(line)
      }
    })
    cp.stderr.on('data', (s: string) => { err = (err + s).slice(-STDERR_TAIL) })
    if (opts.stderrFile != null) cp.stderr.pipe(createWriteStream(opts.stderrFile, { flags: 'a' }))
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
      cp.on('error', e => { err += `\n${e.message}`; resolve({ code: 127, signal: null }) })
      cp.on('close', (code, signal) => resolve({ code, signal }))
    })
    const child: Child = {
      name,
      pid: cp.pid ?? -1,
      exited,
      stdout: () => out,
      stderr: () => err,
      onLine: f => { lineListeners.push(f) }
    }
    running.add(child)
    void exited.then(() => running.delete(child))
    return child
  }

  return {
    spawn: spawnOne,
    async run (name, cmd, args, opts) {
      const c = spawnOne(name, cmd, args, opts)
      const { code, signal } = await c.exited
      if (code !== 0) throw new Error(`${name} failed (${signal ?? `exit ${code}`}): ${c.stderr().trim().split('\n').slice(-5).join(' / ') || c.stdout().trim().slice(-500)}`)
      return c.stdout()
    },
    live: () => [...running],
    async killAll () {
      const kids = [...running]
      for (const c of kids) signalGroup(c.pid, 'SIGTERM')
      const grace = new Promise<void>(resolve => setTimeout(resolve, KILL_GRACE_MS).unref())
      await Promise.race([Promise.all(kids.map(async c => await c.exited)), grace])
      for (const c of running) signalGroup(c.pid, 'SIGKILL')
      await Promise.race([Promise.all([...running].map(async c => await c.exited)), new Promise(resolve => setTimeout(resolve, 2000).unref())])
    }
  }
}

function signalGroup (pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return
  try {
    process.kill(-pid, signal)
  } catch {
    try { process.kill(pid, signal) } catch { /* already gone */ }
  }
}
