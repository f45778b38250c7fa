/** Small process and port helpers shared by the load benchmarks. */
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'

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
