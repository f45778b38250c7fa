/** Process and port helpers shared by the load benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'

const CLI = resolve(import.meta.dirname, '..', '..', 'bin', 'trimswarm.js')

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address()
      srv.close(() => { resolve(typeof a === 'object' && a != null ? a.port : 0) })
    })
  })
}

/** Current resident set size of a process, in KiB (VmRSS). */
export async function rssKiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
}

/** A `trimswarm coordinator` process started by a benchmark. */
export interface CoordinatorProcess {
  child: ChildProcess
  url: string
  /** DATA/admin.token */
  tokenFile: string
}

/** Starts `trimswarm coordinator --data DATA` on a free 127.0.0.1 port and resolves once it listens. */
export async function spawnCoordinator (dataDir: string): Promise<CoordinatorProcess> {
  const listen = `127.0.0.1:${await freePort()}`
  const child = spawn(process.execPath, [CLI, 'coordinator', '--data', dataDir, '--listen', listen, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('coordinator listening on')) resolve() })
    child.once('exit', (code) => { reject(new Error(`coordinator exited with ${code}`)) })
  })
  return { child, url: `http://${listen}`, tokenFile: join(dataDir, 'admin.token') }
}
