/**
 * `npm run bench -- background`: does an agent's sync yield the WAN to a
 * user's own traffic? Builds three network namespaces, a router between hq
 * and branch shaping the link with tc tbf (bench/lib/routed-link.ts; `--rate`,
 * `--queue-ms`, and `--rtt-ms` through the project's delaying relay), runs a coordinator and a plain HTTP file
 * server in "hq" and everything else in "branch", and for foreground and
 * background mode side by side reports: the sync's throughput alone (fraction
 * of the link), a plain HTTP download's throughput alone and beside the sync,
 * and the queueing delay the sync adds (ping through the link, median).
 * Needs root (namespaces); only traffic inside the namespaces it creates.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { parseRate, formatRate } from '../protocol/rate.ts'
import { removeStaleNamespaces, waitReady } from './branch/network.ts'
import { createProcessManager, type Child, type ProcessManager } from './branch/processes.ts'
import { BACKEND_PORT_OFFSET } from './branch/constants.ts'
import { createRoutedLink, ROUTED_HQ_ADDRESS, type RoutedLink } from './lib/routed-link.ts'
import { median } from './lib/stats.ts'
import { segmentRoutes } from '../protocol/segments.ts'

/** One line for the list of benchmarks. */
export const summary = 'background mode: sync alone, a foreground download beside it, and the delay it adds, on a tbf link in namespaces'

/** Help text. */
export const usage = `Usage: npm run bench -- background [--rate 20mbit] [--queue-ms 300] [--rtt-ms 0,40] [--seconds 12] [--size-mib 160] [--modes foreground,background] [--cc cubic] [--origin segments] [--trace DIR] [--json]

Builds namespaces hq - rt - branch, the router rt shaping both directions with
tc tbf (--rate, a queue of --queue-ms; bench/lib/routed-link.ts), a delaying relay for --rtt-ms of round trip
(a comma list runs each), a coordinator and an HTTP file server in hq; then for
each mode: the agent's sync alone (WAN throughput as a fraction of the link,
ping through the link), a plain HTTP download alone and beside the sync.
--cc sets TCP's congestion control inside the namespaces (default cubic, a
loss-based one as most servers run, which fills the queue; bbr keeps it short).
--origin segments (default: the coordinator's compressed segments, what a
client of a published version takes, 3 downloads at a time; built at zstd level 1,
random bytes compress at no level) or batches (no segments: POST .../blocks, one
64 MiB batch at a time).
--trace DIR: the background sync writes every delay sample of its controller
(delay, base, queueing delay, rate, phase, delivered rate) to DIR/rtt-<ms>.jsonl,
and each run logs a summary of the samples in its "alone" window.
Needs root.`

/** Its options. */
export const options = {
  rate: { type: 'string' },
  'queue-ms': { type: 'string' },
  'rtt-ms': { type: 'string' },
  seconds: { type: 'string' },
  'size-mib': { type: 'string' },
  modes: { type: 'string' },
  cc: { type: 'string' },
  origin: { type: 'string' },
  trace: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean' }
} as const

const CLI = new URL('../bin/trimswarm.js', import.meta.url).pathname
const SERVE = new URL('./branch/serve.ts', import.meta.url).pathname
const COORD_PORT = 8440
const HTTP_PORT = 8080
const IMAGE = 'bg-bench'
/** Time a sync runs before its throughput is measured (start-up, manifest, ramp-up). */
const WARMUP_MS = 6_000
/** Most to wait for the coordinator's segment build after the publish (level 1: seconds for 160 MiB). */
const SEGMENT_WAIT_MS = 120_000

/** Where the sync's origin bytes come from: the version's segments, or block batches (a coordinator that builds none). */
export type BenchOrigin = 'segments' | 'batches'

/** Stops what the running measurement started (SIGINT/SIGTERM of the benchmark). */
let cleanupOnSignal: (() => Promise<void>) | undefined

/** Options of one measurement. */
export interface BackgroundBenchInit {
  /** Link rate, bytes per second. */
  rate: number
  queueMs: number
  rttMs: number
  /** Seconds of each measured window. */
  seconds: number
  sizeMib: number
  modes: Array<'foreground' | 'background'>
  /** TCP congestion control inside the namespaces (cubic, bbr, reno). */
  cc: string
  /** Default segments. */
  origin?: BenchOrigin
  /** Time a sync runs before its throughput is measured (ms). */
  warmupMs?: number
  /** Progress lines. */
  log?: (line: string) => void
  /** Folder for the background sync's controller trace (TRIMSWARM_BACKGROUND_TRACE), one file per RTT. */
  traceDir?: string
}

/** What one mode measured. */
export interface ModeResult {
  mode: 'foreground' | 'background'
  /** The sync's WAN throughput alone, as a fraction of the link. */
  syncAloneFraction: number
  /** Median ping through the link while the sync ran alone, minus the idle median (ms). */
  addedDelayMs: number
  /** Median ping while the download ran beside the sync, minus the idle median (ms). */
  besideAddedDelayMs: number
  /** The HTTP download's throughput beside the sync (bytes/s). */
  downloadBeside: number
  /** downloadBeside / the download alone. */
  downloadShare: number
  /** The sync's WAN throughput while the download ran, as a fraction of the link. */
  syncBesideFraction: number
}

/** What a run at one RTT measured. */
export interface RttResult {
  rttMs: number
  idlePingMs: number
  /** The HTTP download alone (bytes/s). */
  downloadAlone: number
  /** Median ping while the download ran alone, minus the idle median (ms): the queue a plain TCP download builds. */
  downloadAddedDelayMs: number
  modes: ModeResult[]
}

function writeRandomFile (path: string, bytes: number): void {
  const fd = openSync(path, 'w')
  try {
    const block = 4 * 1024 * 1024
    for (let at = 0; at < bytes; at += block) writeSync(fd, randomBytes(Math.min(block, bytes - at)))
  } finally {
    closeSync(fd)
  }
}

/** Median of ping round trips (ms) from branch to hq over `seconds`. */
async function pingMedian (pm: ProcessManager, net: RoutedLink, seconds: number): Promise<number> {
  const c = pm.spawn('ping', ...net.branch('ping', ['-n', '-i', '0.2', '-w', String(seconds), ROUTED_HQ_ADDRESS]))
  await c.exited
  const times = [...c.stdout().matchAll(/time=([\d.]+) ms/g)].map(m => Number(m[1]))
  if (times.length === 0) throw new Error(`ping through the link got no answer: ${c.stderr().slice(-300)}`)
  return median(times)
}

/** A plain HTTP download from hq for `seconds`; bytes per second. */
async function download (pm: ProcessManager, net: RoutedLink, url: string, seconds: number): Promise<number> {
  const c = pm.spawn('download', ...net.branch('curl', ['-s', '-o', '/dev/null', '--max-time', String(seconds), '-w', '%{size_download} %{time_total}', url]))
  await c.exited
  const [size, time] = c.stdout().trim().split(' ').map(Number)
  if (!(size > 0) || !(time > 0)) throw new Error(`download failed: ${c.stdout()} ${c.stderr().slice(-300)}`)
  return size / time
}

/** Ends one child (its process group: spawned detached), SIGKILL if it lingers. */
async function stopChild (c: Child): Promise<void> {
  const group = (signal: NodeJS.Signals): void => { try { process.kill(-c.pid, signal) } catch { /* gone */ } }
  group('SIGTERM')
  if (await Promise.race([c.exited.then(() => true), sleep(5_000).then(() => false)])) return
  group('SIGKILL')
  await c.exited
}

/** WAN bytes hq -> branch per second over `ms`. */
async function wanDown (net: RoutedLink, ms: number): Promise<number> {
  const a = net.sampleDown()
  await sleep(ms)
  const b = net.sampleDown()
  return (b.bytes - a.bytes) / ((b.t - a.t) / 1000)
}

/** Waits until the coordinator serves the image's segment table (built after the publish); seconds waited. */
async function waitForSegments (pm: ProcessManager, net: RoutedLink, coordinator: string, tokenFile: string): Promise<number> {
  const t = performance.now()
  // the token in a header file (curl -H @file), not on a command line
  const headers = `${tokenFile}.header`
  writeFileSync(headers, `Authorization: Bearer ${readFileSync(tokenFile, 'utf8').trim()}\n`, { mode: 0o600 })
  for (;;) {
    let status = ''
    try { status = (await pm.run('segment table', ...net.hq('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', `@${headers}`, `${coordinator}${segmentRoutes.table(IMAGE, 'v1')}`]))).trim() } catch {}
    if (status === '200') return (performance.now() - t) / 1000
    if (performance.now() - t > SEGMENT_WAIT_MS) throw new Error(`the coordinator did not build the segments within ${SEGMENT_WAIT_MS / 1000} s (last answer HTTP ${status})`)
    await sleep(1000)
  }
}

/** Runs the measurement at one RTT: builds the network, measures, tears it down. */
export async function measureBackground (init: BackgroundBenchInit): Promise<RttResult> {
  const log = init.log ?? (() => {})
  const pm = createProcessManager()
  const work = mkdtempSync(join(tmpdir(), 'trimswarm-bg-'))
  let net: RoutedLink | undefined
  try {
    removeStaleNamespaces()
    net = await createRoutedLink(pm, { id: process.pid, rate: init.rate, rttMs: init.rttMs, queueMs: init.queueMs, cc: init.cc })
    const n = net
    cleanupOnSignal = async () => { await pm.killAll(); await n.teardown() }
    const cli = (args: string[]): [string, string[]] => [process.execPath, [CLI, ...args]]
    // hq: a coordinator with the image, and a file server with a big file for the foreground download
    const www = join(work, 'www')
    mkdirSync(www, { recursive: true })
    const big = openSync(join(www, 'big.bin'), 'w')
    ftruncateSync(big, 4 * 1024 ** 3) // sparse: the download is time-bounded, never read whole
    closeSync(big)
    const http = pm.spawn('http server', ...n.hq(process.execPath, [SERVE, '--root', www, '--listen', `127.0.0.1:${HTTP_PORT + BACKEND_PORT_OFFSET}`]))
    await waitReady(http.onLine, http.exited, 'http server', http.stderr)
    const coordData = join(work, 'coordinator')
    const coordBackend = `127.0.0.1:${COORD_PORT + BACKEND_PORT_OFFSET}`
    const origin = init.origin ?? 'segments'
    // random bytes compress at no level: level 19 (the default) kept one of the machine's 2 CPUs busy for minutes
    // after the publish, through every measurement, and the sync took batches as the segments were not ready
    const coordConfig = join(work, 'coordinator.json')
    writeFileSync(coordConfig, JSON.stringify({ segments: origin === 'segments' ? { zstdLevel: 1 } : { build: false } }))
    const coord = pm.spawn('coordinator', ...n.hq(...cli(['coordinator', '--data', coordData, '--listen', coordBackend, '--config', coordConfig, '--log-level', 'error'])))
    const adminToken = join(coordData, 'admin.token')
    for (let i = 0; ; i++) {
      try { await pm.run('health', ...n.hq('curl', ['-sf', '-o', '/dev/null', `http://${coordBackend}/healthz`])); readFileSync(adminToken); break } catch {}
      if (i > 240) throw new Error(`coordinator did not start: ${coord.stderr().slice(-500)}`)
      await sleep(250)
    }
    const admin = (args: string[]): [string, string[]] => n.hq(...cli([...args, '--coordinator', `http://${coordBackend}`, '--token-file', adminToken]))
    const token = (await pm.run('token', ...admin(['token', 'create', '--group', 'bg', '--name', 'bench']))).trim().split('\n').pop() ?? ''
    const agentToken = join(work, 'agent.token')
    writeFileSync(agentToken, token + '\n', { mode: 0o600 })
    // the policy names no transfer mode: each run says --foreground or --background
    await pm.run('policy', ...admin(['policy', 'set', 'bg', '--images', IMAGE, '--lan-sharing', 'off', '--wan-limit', 'unlimited', '--index-linux', '']))
    const img = join(work, 'image.img')
    log(`publishing ${init.sizeMib} MiB of random data (incompressible: the WAN carries all of it)`)
    writeRandomFile(img, init.sizeMib * 1024 * 1024)
    await pm.run('publish', ...admin(['publish', img, '--image', IMAGE, '--version', 'v1']))
    rmSync(img)
    if (origin === 'segments') {
      const waited = await waitForSegments(pm, n, `http://${coordBackend}`, agentToken)
      log(`segments built ${waited.toFixed(0)} s after the publish`)
    }
    const [coordFront, httpFront] = await n.startRelay([
      { frontPort: COORD_PORT, backendPort: COORD_PORT + BACKEND_PORT_OFFSET },
      { frontPort: HTTP_PORT, backendPort: HTTP_PORT + BACKEND_PORT_OFFSET }
    ])
    const url = `http://${httpFront}/big.bin`
    const idlePingMs = await pingMedian(pm, n, 3)
    log(`idle ping ${idlePingMs.toFixed(1)} ms; download alone for ${init.seconds} s`)
    const [downloadAlone, downloadPing] = await Promise.all([download(pm, n, url, init.seconds), pingMedian(pm, n, init.seconds - 1)])
    log(`download alone ${(downloadAlone / 1e6).toFixed(2)} MB/s, ping ${downloadPing.toFixed(0)} ms`)
    const modes: ModeResult[] = []
    for (const mode of init.modes) {
      const dir = join(work, mode)
      const traceFile = init.traceDir != null && mode === 'background' ? join(init.traceDir, `rtt-${init.rttMs}.jsonl`) : undefined
      const env = traceFile != null ? { ...process.env, TRIMSWARM_BACKGROUND_TRACE: traceFile } : undefined
      const sync = pm.spawn(`sync ${mode}`, ...n.branch(...cli(['agent', 'sync', `${IMAGE}@v1`, '--coordinator', `http://${coordFront}`, '--token-file', agentToken,
        '--data', join(dir, 'data'), '--out', join(dir, 'out.img'), '--no-index', '--no-lan', '--linger', '0', '--quiet', '--verbose', `--${mode}`])), { env })
      await sleep(init.warmupMs ?? WARMUP_MS)
      const aloneFrom = Date.now()
      const [alone, ping] = await Promise.all([wanDown(n, init.seconds * 1000), pingMedian(pm, n, init.seconds)])
      const [beside, syncBeside, besidePing] = await Promise.all([download(pm, n, url, init.seconds), wanDown(n, init.seconds * 1000), pingMedian(pm, n, init.seconds - 1)])
      const done = await Promise.race([sync.exited.then(() => true), sleep(0).then(() => false)])
      if (done) throw new Error(`the ${mode} sync ended before the measurements did (use a bigger --size-mib): ${sync.stderr().slice(-300)}`)
      await stopChild(sync)
      if (process.env.BENCH_VERBOSE === '1') log(`${mode} sync's log:\n${sync.stderr()}`)
      if (traceFile != null) log(`${mode} controller while alone (${traceFile}): ${summarizeTrace(traceFile, aloneFrom, aloneFrom + init.seconds * 1000)}`)
      const r: ModeResult = {
        mode,
        syncAloneFraction: alone / init.rate,
        addedDelayMs: ping - idlePingMs,
        besideAddedDelayMs: besidePing - idlePingMs,
        downloadBeside: beside,
        downloadShare: beside / downloadAlone,
        // the download's own bytes are in the WAN counter too
        syncBesideFraction: Math.max(0, syncBeside - beside) / init.rate
      }
      log(`${mode}: sync alone ${(r.syncAloneFraction * 100).toFixed(0)} % of the link, +${r.addedDelayMs.toFixed(0)} ms; download beside ${(beside / 1e6).toFixed(2)} MB/s (${(r.downloadShare * 100).toFixed(0)} % of alone)`)
      modes.push(r)
    }
    return { rttMs: init.rttMs, idlePingMs, downloadAlone, downloadAddedDelayMs: downloadPing - idlePingMs, modes }
  } finally {
    cleanupOnSignal = undefined
    await pm.killAll()
    await net?.teardown()
    rmSync(work, { recursive: true, force: true })
  }
}

/** The controller's samples between wall-clock times `from` and `to`, in one line: rate, delays and phases. */
export function summarizeTrace (file: string, from: number, to: number): string {
  let lines: string[]
  try { lines = readFileSync(file, 'utf8').split('\n').filter(l => l !== '') } catch { return 'no trace written' }
  const samples = lines.map(l => JSON.parse(l) as { wall: number, delayMs: number, baseDelayMs: number, queueDelayMs: number, rate: number, phase: string })
    .filter(x => x.wall >= from && x.wall < to)
  if (samples.length === 0) return 'no samples in the window'
  const p = (xs: number[], q: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))] }
  const phases = new Map<string, number>()
  for (const x of samples) phases.set(x.phase, (phases.get(x.phase) ?? 0) + 1)
  const rates = samples.map(x => x.rate / 1e6)
  const qd = samples.map(x => x.queueDelayMs)
  const raw = samples.map(x => x.delayMs - x.baseDelayMs)
  return `${samples.length} samples; rate median ${p(rates, 0.5).toFixed(2)} MB/s (p10 ${p(rates, 0.1).toFixed(2)}); ` +
    `queueing delay (filtered) median ${p(qd, 0.5).toFixed(0)} ms, p90 ${p(qd, 0.9).toFixed(0)} ms; raw sample minus base median ${p(raw, 0.5).toFixed(0)} ms, p90 ${p(raw, 0.9).toFixed(0)} ms; ` +
    `base ${samples.at(-1)!.baseDelayMs.toFixed(1)} ms; ` + [...phases].map(([k, v]) => `${k} ${(100 * v / samples.length).toFixed(0)} %`).join(', ')
}

function parsePositive (text: string | undefined, fallback: number, what: string): number {
  if (text == null) return fallback
  const n = Number(text)
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${what} must be a number of at least 0, got ${JSON.stringify(text)}`)
  return n
}

function signed (ms: number): string {
  return (ms < 0 ? '-' : '+') + Math.abs(ms).toFixed(0)
}

/** Renders the results as a Markdown table. */
export function renderTable (results: RttResult[], init: { rate: number, queueMs: number, cc: string, origin?: BenchOrigin }): string {
  const lines = [
    `Link ${formatRate(init.rate)} (tc tbf in a router namespace), queue ${init.queueMs} ms, TCP ${init.cc}, origin ${init.origin ?? 'segments'}.`,
    '',
    '| RTT | mode | sync alone (x link) | delay added by the sync (ping) | download alone (its delay) | download beside sync (delay) | download share | sync beside download (x link) |',
    '|---|---|---|---|---|---|---|---|'
  ]
  for (const r of results) {
    for (const m of r.modes) {
      lines.push(`| ${r.rttMs} ms | ${m.mode} | ${m.syncAloneFraction.toFixed(2)} | ${signed(m.addedDelayMs)} ms (idle ${r.idlePingMs.toFixed(1)} ms) | ${(r.downloadAlone / 1e6).toFixed(2)} MB/s (${signed(r.downloadAddedDelayMs)} ms) | ${(m.downloadBeside / 1e6).toFixed(2)} MB/s (${signed(m.besideAddedDelayMs)} ms) | ${m.downloadShare.toFixed(2)} | ${m.syncBesideFraction.toFixed(2)} |`)
    }
  }
  return lines.join('\n')
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  if (values.help === true) { process.stdout.write(usage + '\n'); return 0 }
  if (process.getuid?.() !== 0) { process.stderr.write('background: needs root (it builds network namespaces)\n'); return 2 }
  let rate: number, queueMs: number, seconds: number, sizeMib: number, rtts: number[]
  const modes = (values.modes ?? 'foreground,background').split(',').map(m => m.trim())
  const cc = values.cc ?? 'cubic'
  const origin = values.origin ?? 'segments'
  try {
    rate = parseRate(values.rate ?? '20mbit')
    if (rate <= 0) throw new Error('--rate must be above 0')
    queueMs = parsePositive(values['queue-ms'], 300, 'queue-ms')
    seconds = parsePositive(values.seconds, 12, 'seconds')
    sizeMib = parsePositive(values['size-mib'], 160, 'size-mib')
    rtts = (values['rtt-ms'] ?? '0,40').split(',').map(x => parsePositive(x.trim(), 0, 'rtt-ms'))
    if (!/^[a-z0-9_]+$/.test(cc)) throw new Error(`--cc: ${JSON.stringify(cc)} is not a congestion control name`)
    if (origin !== 'segments' && origin !== 'batches') throw new Error(`--origin: ${JSON.stringify(origin)} is not segments or batches`)
    for (const m of modes) if (m !== 'foreground' && m !== 'background') throw new Error(`--modes: ${JSON.stringify(m)} is not foreground or background`)
  } catch (err) {
    process.stderr.write(`background: ${(err as Error).message}\n\n${usage}\n`)
    return 2
  }
  const traceDir = values.trace != null ? resolve(values.trace) : undefined
  if (traceDir != null) mkdirSync(traceDir, { recursive: true })
  const log = (l: string): void => { process.stderr.write(`background: ${l}\n`) }
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: stopping every process and removing the namespaces`)
    void (cleanupOnSignal?.() ?? Promise.resolve()).finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const load = loadavg()
  log(`load average ${load.map(x => x.toFixed(1)).join(' ')} on ${cpus().length} CPUs`)
  const results: RttResult[] = []
  for (const rttMs of rtts) {
    log(`RTT ${rttMs} ms`)
    results.push(await measureBackground({ rate, queueMs, rttMs, seconds, sizeMib, modes: modes as ModeResult['mode'][], cc, origin, log, traceDir }))
  }
  const after = loadavg()
  if (values.json === true) process.stdout.write(JSON.stringify({ rate, queueMs, seconds, sizeMib, cc, origin, load: { before: load, after, cpus: cpus().length }, results }, null, 2) + '\n')
  else process.stdout.write(renderTable(results, { rate, queueMs, cc, origin }) + `\n\nLoad average before ${load.map(x => x.toFixed(1)).join(' ')}, after ${after.map(x => x.toFixed(1)).join(' ')} (${cpus().length} CPUs).\n`)
  return 0
}
