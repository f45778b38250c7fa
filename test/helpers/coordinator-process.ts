/**
 * A real `trimswarm coordinator` process for end-to-end tests, with its output
 * collected, and a wait for a line of it (e.g. "coordinator listening on").
 */
import { spawn, type ChildProcess } from 'node:child_process'

const CLI = new URL('../../bin/trimswarm.js', import.meta.url).pathname

/** A spawned coordinator and what it printed so far. */
export interface Proc { child: ChildProcess, stdout: string[], stderr: string[], exited: Promise<number | null> }

/** Spawns `trimswarm coordinator ARGS...` with the test's Node. */
export function startCoordinatorProcess (args: string[], env: NodeJS.ProcessEnv = process.env): Proc {
  const child = spawn(process.execPath, [CLI, 'coordinator', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  const stdout: string[] = []
  const stderr: string[] = []
  child.stdout!.setEncoding('utf8').on('data', (d: string) => stdout.push(d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d))
  const exited = new Promise<number | null>(resolve => child.once('exit', (code) => { resolve(code) }))
  return { child, stdout, stderr, exited }
}

/** Waits until the process's stdout matches `pattern`; throws with its output if it exits or `ms` pass first. */
export async function waitFor (p: Proc, pattern: RegExp, ms = 20_000): Promise<void> {
  const until = Date.now() + ms
  while (!pattern.test(p.stdout.join(''))) {
    if (p.child.exitCode != null) throw new Error(`coordinator exited ${p.child.exitCode}: ${p.stderr.join('')}`)
    if (Date.now() > until) throw new Error(`timed out waiting for ${pattern}: ${p.stdout.join('')} ${p.stderr.join('')}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
