/**
 * Runs a command as a child process and measures it: wall seconds and peak
 * RSS (the kernel's VmHWM of its pid, sampled every 50 ms; the agent's
 * re-exec with process.execve keeps the pid). `killWhen` is polled at the
 * same rate to SIGKILL it (crash tests).
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { cpuSeconds } from './proc.ts'

/** How a measured run ended. */
export interface MeasuredRun {
  code: number | null
  signal: string | null
  seconds: number
  peakRssMB: number
  /** CPU seconds (user + system, every thread) of the process, from /proc/PID/stat sampled every 50 ms: at most 50 ms short. */
  cpuSeconds: number
  stdout: string
  stderr: string
}

/** Runs `cmd args`, sampling its peak RSS; stderr is captured unless `inheritStderr`. */
export async function runMeasured (cmd: string, args: string[], options: { killWhen?: () => boolean, inheritStderr?: boolean } = {}): Promise<MeasuredRun> {
  const t0 = performance.now()
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', options.inheritStderr === true ? 'inherit' : 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  let peak = 0
  let cpu = 0
  const timer = setInterval(() => {
    if (child.pid != null) cpuSeconds(child.pid).then((s) => { cpu = Math.max(cpu, s) }, () => {})
    readFile(`/proc/${child.pid}/status`, 'utf8').then((s) => {
      const m = /VmHWM:\s+(\d+) kB/.exec(s)
      if (m != null) peak = Math.max(peak, Number(m[1]) / 1024)
    }, () => {})
    if (options.killWhen?.() === true) child.kill('SIGKILL')
  }, 50)
  const [code, signal] = await new Promise<[number | null, string | null]>(resolve => child.on('close', (c, s) => { resolve([c, s]) }))
  clearInterval(timer)
  return { code, signal, seconds: (performance.now() - t0) / 1000, peakRssMB: peak, cpuSeconds: cpu, stdout, stderr }
}
