/** Process and port helpers shared by the load benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
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

/** CPU time a process has used so far (user + system, all its threads), in seconds: a per-request cost that a busy machine does not distort the way it distorts latency. */
export async function cpuSeconds (pid: number): Promise<number> {
  const { user, system } = await cpuTimes(pid)
  return user + system
}

/** CPU time a process has used so far, in user space and in the kernel (all its threads), in seconds; and its minor page faults. */
export interface CpuTimes {
  user: number
  system: number
  /**
   * Minor page faults so far: fresh pages the process touched. Each costs a host fault too on a guest whose
   * balloon reports free pages (docs/BENCHMARKS.md "Session 18"), so it is the figure a slow-memory state multiplies.
   */
  minorFaults: number
}

/** The process's CpuTimes now, from /proc/PID/stat. */
export async function cpuTimes (pid: number): Promise<CpuTimes> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // fields after the command (which may hold spaces) start at state; minflt is field 10, utime and stime are 14 and 15
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(f[11]) / CLOCK_TICKS, system: Number(f[12]) / CLOCK_TICKS, minorFaults: Number(f[7]) }
}

/** USER_HZ: the unit of /proc/PID/stat times (100 on Linux on every architecture Node runs on). */
const CLOCK_TICKS = 100

/** A `trimswarm coordinator` process started by a benchmark. */
export interface CoordinatorProcess {
  child: ChildProcess
  url: string
  /** DATA/admin.token */
  tokenFile: string
  /** Where its heap snapshots go (SIGUSR2; see memoryAfterFullGc): DATA/../diagnostics */
  diagnosticDir: string
}

/** Starts `trimswarm coordinator --data DATA` on a free 127.0.0.1 port and resolves once it listens; SIGUSR2 makes it write a heap snapshot. */
export async function spawnCoordinator (dataDir: string): Promise<CoordinatorProcess> {
  const listen = `127.0.0.1:${await freePort()}`
  const diagnosticDir = join(dataDir, '..', 'diagnostics')
  await mkdir(diagnosticDir, { recursive: true })
  const flags = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${diagnosticDir}`]
  const child = spawn(process.execPath, [...flags, CLI, 'coordinator', '--data', dataDir, '--listen', listen, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('coordinator listening on')) resolve() })
    child.once('exit', (code) => { reject(new Error(`coordinator exited with ${code}`)) })
  })
  return { child, url: `http://${listen}`, tokenFile: join(dataDir, 'admin.token'), diagnosticDir }
}

/** A coordinator's memory in MiB: RSS from /proc, V8 heap and external memory from its /metrics (`process_*`, `nodejs_*` gauges). */
export interface MemoryFigures {
  rss: number
  heapTotal: number
  heapUsed: number
  external: number
}

const mib = (bytes: number): number => Math.round(bytes / 1048576)

/** One reading of the coordinator's memory (its /metrics answers even under load, just later; it needs the admin token). */
export async function coordinatorMemory (pid: number, url: string, tokenFile: string): Promise<MemoryFigures> {
  const token = (await readFile(tokenFile, 'utf8')).trim()
  const res = await fetch(url + '/metrics', { headers: { authorization: `Bearer ${token}` } })
  if (!res.ok) throw new Error(`GET /metrics: ${res.status} ${await res.text()}`)
  const text = await res.text()
  const gauge = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { rss: Math.round(await rssKiB(pid) / 1024), heapTotal: mib(gauge('nodejs_heap_size_total_bytes')), heapUsed: mib(gauge('nodejs_heap_size_used_bytes')), external: mib(gauge('nodejs_external_memory_bytes')) }
}

/**
 * The coordinator's memory right after a full garbage collection: SIGUSR2
 * makes it write a heap snapshot (spawnCoordinator's `diagnosticDir`), which
 * collects garbage first; /metrics answers once the snapshot is written. The
 * snapshot is deleted. heapUsed is then the live heap, and V8 has given back
 * the heap it grew for garbage, so what RSS keeps over another such reading
 * is held, not garbage waiting for a lazy collector.
 */
export async function memoryAfterFullGc (coordinator: CoordinatorProcess): Promise<MemoryFigures> {
  const { child, url, diagnosticDir, tokenFile } = coordinator
  const before = new Set(await readdir(diagnosticDir))
  child.kill('SIGUSR2')
  for (let i = 0; ; i++) {
    await new Promise(resolve => setTimeout(resolve, 500))
    const fresh = (await readdir(diagnosticDir)).filter(f => f.endsWith('.heapsnapshot') && !before.has(f))
    if (fresh.length > 0) {
      const m = await coordinatorMemory(child.pid!, url, tokenFile) // answered after the snapshot is complete (it blocks the event loop)
      for (const f of fresh) await rm(join(diagnosticDir, f), { force: true })
      return m
    }
    if (i > 120) throw new Error('the coordinator wrote no heap snapshot within 60 s of SIGUSR2')
  }
}

/** What MemoryWatch.finish() reports: is memory flat across a load? */
export interface MemoryReport {
  /** Before the load, after a full GC. */
  start: MemoryFigures
  /** Highest RSS sampled during the load. */
  peakRss: number
  /** As the load ended. */
  afterLoad: MemoryFigures
  /** After `settleSeconds` without load (V8 may or may not have shrunk its heap by then). */
  settled: MemoryFigures
  settleSeconds: number
  /** After the settle period and a full GC: comparable with `start`. */
  afterGc: MemoryFigures
  /** RSS samples [seconds since start, MiB], every sampleMs during the load and the settle period. */
  samples: Array<[number, number]>
  /** afterGc.rss - start.rss */
  rssGrowth: number
  /** afterGc.heapUsed - start.heapUsed: live JS heap gained (a leak of JS objects shows here) */
  heapGrowth: number
  /** rssGrowth <= maxGrowth and heapGrowth <= maxGrowth / 4 */
  flat: boolean
  maxGrowth: number
}

/** Samples a coordinator's RSS from the start of a load until finish(). */
export interface MemoryWatch {
  /** Marks the end of the load (reads afterLoad), waits settleSeconds (sampling on), reads `settled`, then `afterGc`. */
  finish: () => Promise<MemoryReport>
}

/**
 * Starts watching: reads `start` (after a full GC) now, then RSS every
 * `sampleMs`. Memory is flat when, after the load, the settle period and a
 * full GC, RSS is at most `maxGrowthMiB` and the live heap at most a quarter
 * of that above the start: a leak keeps what it took, V8 gives back heap it
 * grew for garbage.
 */
export async function watchMemory (coordinator: CoordinatorProcess, opts: { sampleMs: number, settleSeconds: number, maxGrowthMiB: number }): Promise<MemoryWatch> {
  const { child, url, tokenFile } = coordinator
  const pid = child.pid!
  const start = await memoryAfterFullGc(coordinator)
  const t0 = performance.now()
  const samples: Array<[number, number]> = [[0, start.rss]]
  let peakRss = start.rss
  let loadRunning = true
  const timer = setInterval(() => {
    rssKiB(pid).then(kib => {
      const v = Math.round(kib / 1024)
      samples.push([Math.round((performance.now() - t0) / 100) / 10, v])
      if (loadRunning) peakRss = Math.max(peakRss, v)
    }, () => {})
  }, opts.sampleMs)
  return {
    async finish () {
      loadRunning = false
      try {
        const afterLoad = await coordinatorMemory(pid, url, tokenFile)
        peakRss = Math.max(peakRss, afterLoad.rss)
        await new Promise(resolve => setTimeout(resolve, opts.settleSeconds * 1000))
        const settled = await coordinatorMemory(pid, url, tokenFile)
        clearInterval(timer)
        const afterGc = await memoryAfterFullGc(coordinator)
        const rssGrowth = afterGc.rss - start.rss
        const heapGrowth = afterGc.heapUsed - start.heapUsed
        const flat = rssGrowth <= opts.maxGrowthMiB && heapGrowth <= opts.maxGrowthMiB / 4
        return { start, peakRss, afterLoad, settled, settleSeconds: opts.settleSeconds, afterGc, samples, rssGrowth, heapGrowth, flat, maxGrowth: opts.maxGrowthMiB }
      } finally {
        clearInterval(timer)
      }
    }
  }
}

/** The memory lines of a load benchmark's text output. */
export function memoryLines (m: MemoryReport): string[] {
  const f = (x: MemoryFigures): string => `RSS ${x.rss} MiB (heap ${x.heapUsed} used / ${x.heapTotal}, external ${x.external})`
  const sign = (n: number): string => `${n >= 0 ? '+' : ''}${n}`
  return [
    `  memory     coordinator before the load, after a full GC: ${f(m.start)}`,
    `             peak RSS during the load ${m.peakRss} MiB; as the load ended ${f(m.afterLoad)}`,
    `             after ${m.settleSeconds} s idle ${f(m.settled)}`,
    `             then after a full GC ${f(m.afterGc)}`,
    `             growth over the start: RSS ${sign(m.rssGrowth)} MiB, live heap ${sign(m.heapGrowth)} MiB: ${m.flat ? 'flat' : 'NOT flat'} (limits +${m.maxGrowth} / +${m.maxGrowth / 4} MiB)`
  ]
}
