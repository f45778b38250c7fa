/**
 * Runs the branch-office benchmark end to end: checks, network, hq services
 * (coordinator, plain HTTP server), publishing, then per scenario every
 * method with all clients at once, measured on the link; writes the report.
 * Everything is driven through public CLIs as separate processes.
 */
import { execFileSync } from 'node:child_process'
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, cpSync } from 'node:fs'
import { cpus, hostname, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseRate } from '../../protocol/rate.ts'
import type { BranchConfig, Method } from './flags.ts'
import { BranchUsageError, publishedVersions } from './flags.ts'
import { createProcessManager } from './processes.ts'
import type { Child, ProcessManager } from './processes.ts'
import { createNetnsNetwork, createProxyNetwork, removeStaleNamespaces, waitReady } from './network.ts'
import type { CommandLine, Network } from './network.ts'
import { builtCli } from './built-cli.ts'
import { sampleDelta, throughputSeries } from './counters.ts'
import type { Sample } from './counters.ts'
import { accountingCheck, formatBytes, renderJson, renderMarkdown, resultTable, wanBytes } from './report.ts'
import type { BranchReport, ClientResult, MethodResult } from './report.ts'
import { buildCharts } from './charts.ts'
import { createProgress } from './progress.ts'
import type { Progress } from './progress.ts'
import {
  AGENT_GROUP, BT_LINGER_MAX_S, BT_PIECE_BYTES, BT_SEED_READY_MS, BT_ZSTD_LEVEL, BT_ZSTD_WINDOW_LOG, COORDINATOR_PORT, DELTA_PACK_WAIT_MS, SEGMENT_WAIT_MS,
  HTTP_PORT, HTTP_ZSTD_LEVEL, IMAGE_NAME, SAMPLE_PERIOD_MS, V1, V2
} from './constants.ts'
import type { Scenario } from './constants.ts'
import { findCorpus } from '../lib/corpus.ts'
import { pollUntil, type PollResult } from '../lib/poll.ts'
import { cpuSeconds, cpuTimes, type CpuTimes } from '../lib/proc.ts'
import { makeTorrent, scrapeSeeds } from './torrent.ts'
import { ANNOUNCE_URL, HOOK_SCRIPT, clientCommand, scrapeUrl, seedCommand, trackerCommand } from './bittorrent.ts'

/** Note on trim rows that repeat the cold figures. */
const SAME_AS_COLD = 'figures of cold'

const REPO = resolve(import.meta.dirname, '..', '..')
const TRIMSWARM = join(REPO, 'bin', 'trimswarm.js')
/** Where the BitTorrent baseline keeps its zstd -19 images between runs. */
const BT_CACHE_DIR = join(REPO, '.cache', 'branch-bittorrent')


function hasTool (name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Finds the images folder (bench/lib/corpus.ts: given, found, or built) or explains how to make one. */
export function findImages (dir: string | undefined): string {
  try {
    return findCorpus(dir)
  } catch (err) {
    throw new BranchUsageError(`${(err as Error).message} (base.img is v1, next.img v2; ../shared/corpus/make-images.sh builds them)`)
  }
}

/** Checks everything a run needs before anything is started or configured. */
export function preflight (config: BranchConfig): { images: string, casync: boolean, bittorrent: string | null } {
  if (!config.proxy && process.getuid?.() !== 0) {
    throw new BranchUsageError('not root: network namespaces, veth and tc need root. Run as root for the real shaped network, or add --proxy to use the 127.0.0.1 shaping proxy instead (less realistic; the report says so).')
  }
  const images = findImages(config.imagesDir)
  const needed = ['curl', 'zstd', 'b3sum', ...(config.proxy ? [] : ['ip', 'tc'])]
  const missing = needed.filter(t => !hasTool(t))
  if (missing.length > 0) throw new BranchUsageError(`missing tools: ${missing.join(', ')} (install them and run again)`)
  // BitTorrent peers connect to each other directly, which only the namespaces can carry and count.
  const btMissing = ['aria2c', 'opentracker'].filter(t => !hasTool(t))
  const bittorrent = config.proxy ? 'needs the network namespaces (peers connect directly; the --proxy relay cannot carry them)' : btMissing.length > 0 ? `${btMissing.join(' and ')} not installed` : null
  return { images, casync: hasTool('casync'), bittorrent }
}

interface Ctx {
  /** Reads a version's info from the coordinator (HTTP API, from inside hq). */
  versionInfo: (version: string) => Promise<{ deltaPackBytes: number | null }>
  /** HTTP status of the version's segment table (404 while the coordinator still builds it). */
  segmentTableStatus: (version: string) => Promise<number>
  config: BranchConfig
  pm: ProcessManager
  net: Network
  work: string
  images: string
  progress: Progress
  coordFront: string
  httpFront: string
  agentToken: string
  expected: Record<'base' | 'next', string>
  notes: string[]
  /** The coordinator's process id, once started (its CPU per method). */
  coordinatorPid?: number
  /** The BitTorrent baseline's torrents (made in prepareArtifacts) and whether its tracker and seed run. */
  bt: { dir: string, torrents: Partial<Record<'base' | 'next', { file: string, infoHash: string }>>, started: boolean }
}

async function b3 (file: string): Promise<string> {
  return execFileSync('b3sum', ['--no-names', file], { encoding: 'utf8' }).trim()
}

/** The CLI the bench runs: the checkout's sources, or the built one (builtCli). */
let cli = TRIMSWARM

function trimswarm (args: string[]): CommandLine {
  return [process.execPath, [cli, ...args]]
}

/** What measure() watches besides the processes: outputs replaced (done before exit), and where each client's stderr goes. */
interface Watch {
  outputs?: string[]
  /** Per client: a file that gets its whole stderr after a first line with the spawn time (--agent-logs). */
  logs?: string[]
}

/** Spawns every client at once on the branch side and measures the link while they run. */
async function measure (ctx: Ctx, scenario: Scenario, method: Method, clients: CommandLine[],
  finish: (i: number, child: Child, ok: boolean) => Promise<Partial<ClientResult>>, watch: Watch = {}): Promise<MethodResult> {
  const { outputs, logs } = watch
  // A trimswarm agent keeps serving its peers for a while after its image is in place (--linger),
  // so its client is done when PATH is atomically replaced (a new inode), not when the process exits.
  const inode = (f: string): number | null => { try { return statSync(f).ino } catch { return null } }
  const initialInodes = outputs?.map(inode)
  // the method before left its outputs in the page cache (BitTorrent's four images of 805 MB are never fsynced):
  // written out now, not during this method's clients, whose own fsyncs would queue behind them
  execFileSync('sync')
  const samples: Sample[] = [ctx.net.sample()]
  const t0 = samples[0].t
  const children = clients.map(([cmd, args], i) => {
    const log = logs?.[i]
    if (log != null) writeFileSync(log, JSON.stringify({ time: new Date().toISOString(), msg: `bench: spawned ${scenario}/${method}/${i + 1}` }) + '\n')
    return ctx.pm.spawn(`${scenario}/${method}/${i + 1}`, ...ctx.net.branch(cmd, args), { stderrFile: log })
  })
  const doneAt: Array<number | undefined> = children.map(() => undefined)
  const exitAt: Array<number | undefined> = children.map(() => undefined)
  const codes: Array<{ code: number | null, signal: string | null } | undefined> = children.map(() => undefined)
  // CPU seconds from /proc (utime + stime, so not a BitTorrent hook's zstd): each client's last reading, kept when its output is in place
  const cpu: Array<CpuTimes | undefined> = children.map(() => undefined)
  const cpuAtDone: Array<CpuTimes | undefined> = children.map(() => undefined)
  const coordinatorCpu0 = ctx.coordinatorPid == null ? undefined : await cpuSeconds(ctx.coordinatorPid).catch(() => undefined)
  const readCpu = (): void => {
    children.forEach((c, i) => { if (exitAt[i] == null) cpuTimes(c.pid).then(v => { cpu[i] = v }, () => {}) })
  }
  children.forEach((c, i) => { void c.exited.then(x => { exitAt[i] = performance.now(); doneAt[i] ??= exitAt[i]; codes[i] = x }) })
  const tick = (): void => {
    if (outputs != null && initialInodes != null) {
      outputs.forEach((f, i) => {
        if (doneAt[i] == null) {
          const now = inode(f)
          if (now != null && now !== initialInodes[i]) {
            doneAt[i] = performance.now()
            cpuAtDone[i] = cpu[i]
            const log = logs?.[i]
            if (log != null) appendFileSync(log, JSON.stringify({ time: new Date().toISOString(), msg: 'bench: output in place' }) + '\n')
          }
        }
      })
    }
    readCpu()
    const s = ctx.net.sample()
    samples.push(s)
    const d = sampleDelta(samples[0], s)
    const prev = samples.length > 1 ? samples[samples.length - 2] : samples[0]
    const rate = sampleDelta(prev, s)
    ctx.progress.update(`[${scenario}] ${method.padEnd(9)} ${doneAt.filter(x => x != null).length}/${children.length} done  WAN ${formatBytes(d.wan).padStart(9)}  ${(rate.seconds > 0 ? rate.wan * 8 / rate.seconds / 1e6 : 0).toFixed(1).padStart(6)} Mbit/s  LAN ${formatBytes(d.lan)}  ${d.seconds.toFixed(0)} s`)
  }
  const timer = setInterval(tick, SAMPLE_PERIOD_MS)
  try {
    await Promise.all(children.map(async c => await c.exited))
  } finally {
    clearInterval(timer)
  }
  // Let the last ACKs and FINs cross the link before the final reading.
  await new Promise(resolve => setTimeout(resolve, 300))
  tick()
  ctx.progress.done()
  const coordinatorCpu1 = ctx.coordinatorPid == null ? undefined : await cpuSeconds(ctx.coordinatorPid).catch(() => undefined)
  const end = samples[samples.length - 1]
  const delta = sampleDelta(samples[0], end)
  const results: ClientResult[] = []
  for (let i = 0; i < children.length; i++) {
    const ok = codes[i]?.code === 0
    const seconds = ((doneAt[i] ?? end.t) - t0) / 1000
    const extra = await finish(i, children[i], ok)
    results.push({
      client: i + 1,
      seconds,
      exitSeconds: ((exitAt[i] ?? end.t) - t0) / 1000,
      ok,
      verified: false,
      ...cpuFields(cpuAtDone[i] ?? cpu[i]),
      ...(ok ? {} : { error: `exit ${codes[i]?.signal ?? codes[i]?.code}: ${children[i].stderr().trim().split('\n').slice(-3).join(' / ')}` }),
      ...extra
    })
  }
  const okTimes = results.filter(r => r.ok).map(r => r.seconds)
  const reportedPeers = results.reduce((s, r) => s + (r.reported?.peers ?? 0), 0)
  const reportedLocal = results.some(r => r.reported != null) ? results.reduce((s, r) => s + (r.reported?.local ?? 0), 0) : null
  const r: MethodResult = {
    scenario,
    method,
    ran: true,
    clients: results,
    wanDown: delta.wanDown,
    wanUp: delta.wanUp,
    wanDownPackets: delta.wanDownPackets,
    wanUpPackets: delta.wanUpPackets,
    lan: ctx.net.lanMeasured ? delta.lan : reportedPeers,
    local: reportedLocal,
    firstDoneSeconds: okTimes.length > 0 ? Math.min(...okTimes) : null,
    allDoneSeconds: okTimes.length === results.length && okTimes.length > 0 ? Math.max(...okTimes) : null,
    throughput: throughputSeries(samples),
    ...(coordinatorCpu0 != null && coordinatorCpu1 != null ? { coordinatorCpuSeconds: coordinatorCpu1 - coordinatorCpu0 } : {})
  }
  // a trimswarm client is one process; the others' work is in children (curl | zstd, aria2c's hook), which /proc does not count
  const cpuNote = method === 'trimswarm'
    ? `; CPU until done ${results.map(x => x.cpuSeconds?.toFixed(1) ?? '?').join(', ')} s per agent (in the kernel ${results.map(x => x.systemSeconds?.toFixed(1) ?? '?').join(', ')} s), ` +
      `coordinator ${r.coordinatorCpuSeconds?.toFixed(1) ?? '?'} s`
    : ''
  ctx.progress.line(`[${scenario}] ${method}: WAN ${formatBytes(wanBytes(r))}, LAN ${formatBytes(r.lan)}, all done in ${r.allDoneSeconds?.toFixed(1) ?? 'n/a (failures)'} s, verified ${results.filter(x => x.verified).length}/${results.length}${cpuNote}`)
  return r
}

/** A client's CPU until done for its result: user + kernel, and the kernel's part. */
function cpuFields (t: CpuTimes | undefined): Pick<ClientResult, 'cpuSeconds' | 'systemSeconds'> {
  return t == null ? {} : { cpuSeconds: t.user + t.system, systemSeconds: t.system }
}

async function verifyAndRemove (file: string, expected: string, remove: boolean): Promise<boolean> {
  let ok = false
  try { ok = (await b3(file)) === expected } catch { ok = false }
  if (remove) rmSync(file, { force: true })
  return ok
}

async function runHttp (ctx: Ctx, scenario: Scenario): Promise<MethodResult> {
  const image = scenario === 'update' ? 'next' : 'base'
  const dir = join(ctx.work, 'clients', scenario, 'http')
  mkdirSync(dir, { recursive: true })
  const outs = Array.from({ length: ctx.config.agents }, (_, i) => join(dir, `out-${i + 1}.img`))
  const url = `http://${ctx.httpFront}/${image}.img.zst`
  return await measure(ctx, scenario, 'http', outs.map(o => ['bash', ['-c', 'set -o pipefail; curl -sS --fail "$1" | zstd -d -q -f -o "$2"', 'fetch', url, o]]),
    async (i, _c, ok) => ({ verified: ok && await verifyAndRemove(outs[i], ctx.expected[image], true) }))
}

async function runCasync (ctx: Ctx, scenario: Scenario): Promise<MethodResult> {
  const image = scenario === 'update' ? 'next' : 'base'
  const dir = join(ctx.work, 'clients', scenario, 'casync')
  mkdirSync(dir, { recursive: true })
  const outs = Array.from({ length: ctx.config.agents }, (_, i) => join(dir, `out-${i + 1}.img`))
  const seed = scenario === 'update' ? [`--seed=${join(ctx.images, 'base.img')}`] : []
  return await measure(ctx, scenario, 'casync', outs.map(o => ['casync', ['extract', ...seed, `--store=http://${ctx.httpFront}/default.castr`, `http://${ctx.httpFront}/${image}.caibx`, o]]),
    async (i, _c, ok) => ({ verified: ok && await verifyAndRemove(outs[i], ctx.expected[image], true) }))
}

/** Starts opentracker and the seed in hq (once), and waits until the tracker lists the seed for every torrent. */
async function startBittorrent (ctx: Ctx): Promise<void> {
  if (ctx.bt.started) return
  ctx.bt.started = true
  const torrents = Object.values(ctx.bt.torrents)
  // opentracker reads its whitelist after chroot and setuid(nobody): a relative name inside the chroot works both before and after.
  const chroot = join(ctx.work, 'tracker')
  mkdirSync(chroot, { recursive: true, mode: 0o755 })
  writeFileSync(join(chroot, 'whitelist'), torrents.map(t => t.infoHash).join('\n') + '\n', { mode: 0o644 })
  const tracker = ctx.pm.spawn('opentracker', ...ctx.net.hq(...trackerCommand(chroot, 'whitelist')), { cwd: chroot })
  const seed = ctx.pm.spawn('bittorrent seed', ...ctx.net.hq(...seedCommand(ctx.bt.dir, torrents.map(t => t.file))))
  const scrape = join(ctx.work, 'scrape.out')
  const deadline = Date.now() + BT_SEED_READY_MS
  for (const t of torrents) {
    for (;;) {
      let seeds = 0
      try {
        await ctx.pm.run('scrape', ...ctx.net.hq('curl', ['-sS', '--fail', '-o', scrape, scrapeUrl(t.infoHash)]))
        seeds = scrapeSeeds(readFileSync(scrape), t.infoHash)
      } catch { /* tracker not listening yet */ }
      if (seeds > 0) break
      for (const [name, c] of [['opentracker', tracker], ['seed', seed]] as const) {
        if (ctx.pm.live().includes(c)) continue
        throw new Error(`BitTorrent ${name} exited: ${c.stderr().slice(-800)}`)
      }
      if (Date.now() > deadline) throw new Error(`the BitTorrent seed did not appear at the tracker within ${BT_SEED_READY_MS / 1000} s: ${seed.stderr().slice(-800)}`)
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  }
}

async function runBittorrent (ctx: Ctx, scenario: Scenario): Promise<MethodResult> {
  const image = scenario === 'update' ? 'next' : 'base'
  const torrent = ctx.bt.torrents[image]
  if (torrent == null) throw new Error(`no torrent was made for ${image}.img`)
  await startBittorrent(ctx)
  const hook = join(ctx.work, 'bt-hook.sh')
  writeFileSync(hook, HOOK_SCRIPT, { mode: 0o755 })
  const dirs = Array.from({ length: ctx.config.agents }, (_, i) => join(ctx.work, 'clients', scenario, 'bittorrent', `c-${i + 1}`))
  for (const d of dirs) mkdirSync(d, { recursive: true })
  const outs = dirs.map(d => join(d, 'out.img'))
  return await measure(ctx, scenario, 'bittorrent', dirs.map((_, i) => clientCommand(i, torrent.file, hook, dirs)),
    async (i, _c, ok) => {
      let error: string | undefined
      if (!ok) { try { error = readFileSync(join(dirs[i], 'aria2.log'), 'utf8').slice(-500) } catch { /* no log */ } }
      const verified = ok && await verifyAndRemove(outs[i], ctx.expected[image], true)
      rmSync(dirs[i], { recursive: true, force: true })
      return { verified, ...(error != null ? { error } : {}) }
    }, { outputs: outs })
}

function agentDirs (ctx: Ctx, set: string): Array<{ data: string, out: string }> {
  return Array.from({ length: ctx.config.agents }, (_, i) => ({
    data: join(ctx.work, 'agents', set, `data-${i + 1}`),
    out: join(ctx.work, 'agents', set, `out-${i + 1}.img`)
  }))
}

function syncArgs (ctx: Ctx, version: string, d: { data: string, out: string }, index: string[] | null, log = false): string[] {
  return ['agent', 'sync', `${IMAGE_NAME}@${version}`, '--coordinator', `http://${ctx.coordFront}`, '--token-file', ctx.agentToken,
    '--data', d.data, '--out', d.out, ...(index == null ? ['--no-index'] : index.flatMap(x => ['--index', x])), '--json',
    ...(log ? ['--verbose', '--log-format', 'json'] : ['--quiet'])]
}

function parseSummary (stdout: string): ClientResult['reported'] | undefined {
  const lines = stdout.trim().split('\n').filter(l => l.startsWith('{'))
  for (const l of lines.reverse()) {
    try {
      const j = JSON.parse(l) as { bytes?: { local?: number, peers?: number, origin?: number } }
      if (j.bytes != null) return { local: j.bytes.local ?? 0, peers: j.bytes.peers ?? 0, origin: j.bytes.origin ?? 0 }
    } catch { /* not the summary */ }
  }
  return undefined
}

async function runTrimswarm (ctx: Ctx, scenario: Scenario, coldRan: boolean): Promise<MethodResult> {
  const image = scenario === 'update' ? 'next' : 'base'
  let dirs: Array<{ data: string, out: string }>
  let index: string[] | null = null
  if (scenario === 'cold') {
    dirs = agentDirs(ctx, 'cold')
  } else if (scenario === 'update') {
    dirs = agentDirs(ctx, 'cold')
    if (!coldRan) {
      // v1 must be on every agent first: sync it now, not measured.
      ctx.progress.line('[update] preparing: every agent syncs v1 first (not measured)')
      await Promise.all(dirs.map(async (d, i) => await ctx.pm.run(`prepare v1 ${i + 1}`, ...ctx.net.branch(...trimswarm(syncArgs(ctx, V1, d, null))))))
    }
  } else {
    dirs = agentDirs(ctx, 'trim')
    index = ctx.config.indexDirs
    const proto = join(ctx.work, 'agents', 'index-proto')
    ctx.progress.line(`[trim] building the host index of ${index.join(', ')} once (trimswarm agent index), then copying it to each agent's data dir`)
    const t = performance.now()
    const out = await ctx.pm.run('agent index', ...trimswarm(['agent', 'index', '--data', proto, ...index.flatMap(x => ['--index', x]), '--json']))
    const seconds = (performance.now() - t) / 1000
    ctx.notes.push(`trim: the host index of ${index.join(', ')} was built once with \`trimswarm agent index\` in ${seconds.toFixed(1)} s (not in the measured time) and its data dir copied to each agent; each agent's sync then looks blocks up in it as it is and refreshes it (size/mtime/inode, no re-hashing) once its image is in place, after its measured time (an agent's refresh may overlap others still working). Index stats: ${out.trim().split('\n').slice(-1)[0]?.slice(0, 300) ?? ''}`)
    for (const d of dirs) cpSync(proto, d.data, { recursive: true })
  }
  const version = image === 'next' ? V2 : V1
  const logDir = join(ctx.config.outDir, 'agent-logs')
  if (ctx.config.agentLogs) mkdirSync(logDir, { recursive: true })
  return await measure(ctx, scenario, 'trimswarm', dirs.map(d => trimswarm(syncArgs(ctx, version, d, index, ctx.config.agentLogs))),
    async (i, child, ok) => ({
      reported: parseSummary(child.stdout()),
      verified: ok && await verifyAndRemove(dirs[i].out, ctx.expected[image], scenario === 'trim')
    }), { outputs: dirs.map(d => d.out), logs: ctx.config.agentLogs ? dirs.map((_, i) => join(logDir, `${scenario}-${i + 1}.jsonl`)) : undefined })
}

/** Polls the coordinator every 2 s until `probe` answers (a failed request is asked again), at most `timeoutMs`. */
async function waitForBuild<T> (ctx: Ctx, what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<PollResult<T>> {
  return await pollUntil(async () => await probe().catch(() => undefined), {
    everyMs: 2000,
    timeoutMs,
    onWait: (seconds) => { ctx.progress.update(`waiting for the coordinator's ${what} (background build after publish) ${seconds.toFixed(0)} s`) }
  })
}

/**
 * The coordinator builds the v1 -> v2 delta pack in the background after the
 * publish; a real rollout updates clients long after that, so every method is
 * measured once the pack exists (the wait is reported, not measured).
 */
async function waitForDeltaPack (ctx: Ctx): Promise<void> {
  const { value: bytes, seconds } = await waitForBuild(ctx, `delta pack ${V1} -> ${V2}`,
    async () => (await ctx.versionInfo(V2)).deltaPackBytes ?? undefined, DELTA_PACK_WAIT_MS)
  ctx.notes.push(bytes != null
    ? `the coordinator's delta pack ${V1} -> ${V2} is ${formatBytes(bytes)}; ${seconds < 1 ? 'it was ready' : `the methods waited ${seconds.toFixed(0)} s for its background build (not measured)`}.`
    : `the delta pack ${V1} -> ${V2} was still not built after ${DELTA_PACK_WAIT_MS / 1000} s; an update fetched block batches instead.`)
}

/**
 * The coordinator compresses a published version into segments in the
 * background (docs/PROTOCOL.md "Segments"); a real rollout starts long after
 * the publish, when every client takes segments, so trimswarm is measured once
 * the version's segment table is served (the wait is reported, not measured).
 */
async function waitForSegments (ctx: Ctx, version: string): Promise<void> {
  let status = 0
  const { value, seconds } = await waitForBuild(ctx, `segments of ${version}`, async () => {
    status = await ctx.segmentTableStatus(version)
    return status === 200 ? true : undefined
  }, SEGMENT_WAIT_MS)
  ctx.notes.push(value === true
    ? `${IMAGE_NAME}@${version}: ${seconds < 1 ? 'its segments were built when the methods started' : `the methods waited ${seconds.toFixed(0)} s for the coordinator's background segment build (not measured)`}.`
    : `${IMAGE_NAME}@${version}: segments still not built after ${SEGMENT_WAIT_MS / 60_000} min (last answer HTTP ${status}); the agents took block batches.`)
}

function notRun (scenario: Scenario, method: Method, note: string): MethodResult {
  return { scenario, method, ran: false, note, clients: [], wanDown: 0, wanUp: 0, wanDownPackets: 0, wanUpPackets: 0, lan: 0, local: null, firstDoneSeconds: null, allDoneSeconds: null, throughput: [] }
}

async function prepareArtifacts (ctx: Ctx, casync: boolean, bittorrent: boolean): Promise<void> {
  const www = join(ctx.work, 'www')
  mkdirSync(www, { recursive: true })
  const jobs: Array<Promise<unknown>> = []
  for (const name of ['base', 'next'] as const) {
    const img = join(ctx.images, `${name}.img`)
    jobs.push(ctx.pm.run(`zstd ${name}`, 'zstd', [`-${HTTP_ZSTD_LEVEL}`, '-T0', '-q', '-f', img, '-o', join(www, `${name}.img.zst`)]))
    jobs.push(b3(img).then(h => { ctx.expected[name] = h }))
  }
  await Promise.all(jobs)
  if (bittorrent) {
    // Compressed once, as a torrent publisher would; the update needs next.img, cold and trim base.img.
    const names = [...new Set(ctx.config.scenarios.map(s => s === 'update' ? 'next' : 'base'))]
    mkdirSync(ctx.bt.dir, { recursive: true })
    for (const name of names) {
      const zst = join(ctx.bt.dir, `${name}.img.zst`)
      // zstd -19 of an 800 MB image takes minutes on a loaded machine: kept in .cache by the image's BLAKE3, so reruns skip it.
      const cached = join(BT_CACHE_DIR, `${ctx.expected[name]}-zstd${BT_ZSTD_LEVEL}-long${BT_ZSTD_WINDOW_LOG}.img.zst`)
      if (!existsSync(cached)) {
        mkdirSync(BT_CACHE_DIR, { recursive: true })
        await ctx.pm.run(`zstd -${BT_ZSTD_LEVEL} ${name}`, 'zstd', [`-${BT_ZSTD_LEVEL}`, `--long=${BT_ZSTD_WINDOW_LOG}`, '-T0', '-q', '-f', join(ctx.images, `${name}.img`), '-o', `${cached}.tmp`])
        renameSync(`${cached}.tmp`, cached)
      }
      copyFileSync(cached, zst)
      const t = makeTorrent(zst, { announce: ANNOUNCE_URL, pieceLength: BT_PIECE_BYTES })
      const file = join(ctx.work, `${name}.torrent`)
      writeFileSync(file, t.bytes)
      ctx.bt.torrents[name] = { file, infoHash: t.infoHash }
      ctx.notes.push(`BitTorrent: ${name}.img compressed with \`zstd -${BT_ZSTD_LEVEL} --long=${BT_ZSTD_WINDOW_LOG}\` to ${formatBytes(t.length)}, ${t.pieces} pieces of ${BT_PIECE_BYTES / 1024 / 1024} MiB, info hash ${t.infoHash}.`)
    }
  }
  if (casync) {
    for (const name of ['base', 'next']) {
      await ctx.pm.run(`casync make ${name}`, 'casync', ['make', `--store=${join(www, 'default.castr')}`, join(www, `${name}.caibx`), join(ctx.images, `${name}.img`)])
    }
  }
}

async function startServices (ctx: Ctx): Promise<{ adminUrl: string, adminToken: string }> {
  const coordBackend = await ctx.net.backendPort(COORDINATOR_PORT)
  const httpBackend = await ctx.net.backendPort(HTTP_PORT)
  const http = ctx.pm.spawn('http server', ...ctx.net.hq(process.execPath, [join(import.meta.dirname, 'serve.ts'), '--root', join(ctx.work, 'www'), '--listen', `${ctx.net.listenHost}:${httpBackend}`]))
  await waitReady(http.onLine, http.exited, 'http server', http.stderr)
  const coordData = join(ctx.work, 'coordinator')
  const coord = ctx.pm.spawn('coordinator', ...ctx.net.hq(...trimswarm(['coordinator', '--data', coordData, '--listen', `${ctx.net.listenHost}:${coordBackend}`, '--log-level', 'warn'])))
  ctx.coordinatorPid = coord.pid
  const adminUrl = `http://127.0.0.1:${coordBackend}`
  const tokenFile = join(coordData, 'admin.token')
  const deadline = Date.now() + 60_000
  for (;;) {
    if (existsSync(tokenFile)) {
      try {
        await ctx.pm.run('health', ...ctx.net.hq('curl', ['-sf', '-o', '/dev/null', `${adminUrl}/healthz`]))
        break
      } catch { /* not listening yet */ }
    }
    const exited = await Promise.race([coord.exited.then(() => true), new Promise(resolve => setTimeout(() => resolve(false), 250))])
    if (exited === true) throw new Error(`coordinator exited: ${coord.stderr().slice(-800)}`)
    if (Date.now() > deadline) throw new Error(`coordinator did not become healthy: ${coord.stderr().slice(-800)}`)
  }
  const [coordFront, httpFront] = await ctx.net.startWan([
    { frontPort: COORDINATOR_PORT, backendPort: coordBackend },
    { frontPort: HTTP_PORT, backendPort: httpBackend }
  ])
  ctx.coordFront = coordFront
  ctx.httpFront = httpFront
  return { adminUrl, adminToken: tokenFile }
}

/** Writes report.md, report.json and the charts into `outDir`. */
export function writeReport (report: BranchReport, outDir: string, wanRate: number): void {
  mkdirSync(outDir, { recursive: true })
  const charts = buildCharts(report, wanRate)
  for (const [name, svg] of charts) writeFileSync(join(outDir, name), svg)
  writeFileSync(join(outDir, 'report.md'), renderMarkdown(report, [...charts.keys()]))
  writeFileSync(join(outDir, 'report.json'), renderJson(report))
}

/** Rebuilds report.md and the charts of an earlier run from its report.json (after a change to the rendering). */
export function rerender (outDir: string): void {
  const file = join(outDir, 'report.json')
  if (!existsSync(file)) throw new BranchUsageError(`no report.json in ${outDir}`)
  const report = JSON.parse(readFileSync(file, 'utf8')) as BranchReport
  writeReport(report, outDir, parseRate(report.config.wan))
  process.stdout.write(resultTable(report.results) + '\n' + `report: ${join(outDir, 'report.md')}\n`)
}

/** The machine this ran on, for the report. */
export function machineDescription (): string {
  const c = cpus()
  let os = ''
  try { os = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1] ?? '' } catch { /* not Linux */ }
  return `${hostname()}: ${c.length} x ${c[0]?.model?.trim() ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${os || process.platform}, Node ${process.versions.node}`
}

/** Runs the benchmark; returns the exit code. */
export async function runBranch (config: BranchConfig): Promise<number> {
  const pre = preflight(config)
  const pm = createProcessManager()
  const progress = createProgress(process.stderr)
  let net: Network | undefined
  let work = ''
  let cleaned: Promise<void> | undefined
  const cleanup = async (): Promise<void> => {
    cleaned ??= (async () => {
      await pm.killAll()
      await net?.teardown()
      if (work !== '' && !config.keep) rmSync(work, { recursive: true, force: true })
    })()
    await cleaned
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    progress.done()
    process.stderr.write(`\nbranch: ${sig}: stopping every process and removing the network...\n`)
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
  }
  const onFatal = (err: unknown): void => {
    process.stderr.write(`\nbranch: ${(err as Error)?.message ?? String(err)}\n`)
    void cleanup().finally(() => process.exit(1))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  process.on('uncaughtException', onFatal)
  process.on('unhandledRejection', onFatal)
  try {
    if (!config.proxy) {
      const stale = removeStaleNamespaces()
      if (stale.length > 0) progress.line(`removed namespaces left by killed runs: ${stale.join(', ')}`)
    }
    work = mkdtempSync(join(tmpdir(), 'trimswarm-branch-'))
    const notes: string[] = []
    if (config.fromSource) notes.push('trimswarm ran from the checkout\'s TypeScript sources (--from-source), not as it ships.')
    else {
      cli = builtCli(REPO)
      progress.line(`built the trimswarm CLI as it ships (scripts/build.sh): ${cli}`)
      notes.push('trimswarm ran as it ships: the bundle scripts/build.sh writes (dist/), run by bin/trimswarm.js with the checkout\'s node_modules, as in the .deb.')
    }
    const ctx: Ctx = { versionInfo: async () => ({ deltaPackBytes: null }), segmentTableStatus: async () => 0, config, pm, net: undefined as unknown as Network, work, images: pre.images, progress, coordFront: '', httpFront: '', agentToken: join(work, 'agent.token'), expected: { base: '', next: '' }, notes, bt: { dir: join(work, 'bt'), torrents: {}, started: false } }
    const bittorrent = pre.bittorrent == null && config.methods.includes('bittorrent')
    progress.line(`preparing: zstd -${HTTP_ZSTD_LEVEL} of both images${pre.casync ? ', casync make of both' : ''}${bittorrent ? `, zstd -${BT_ZSTD_LEVEL} --long and a torrent of each image BitTorrent needs` : ''}, b3sum (work folder ${work})`)
    await prepareArtifacts(ctx, pre.casync && config.methods.includes('casync'), bittorrent)
    net = config.proxy
      ? await createProxyNetwork({ id: process.pid, wanRate: config.wanRate, wanRttMs: config.wanRttMs, lanRate: config.lanRate })
      : await createNetnsNetwork(pm, { id: process.pid, wanRate: config.wanRate, wanRttMs: config.wanRttMs, lanRate: config.lanRate })
    ctx.net = net
    progress.line(`network: ${net.mode === 'netns' ? 'namespaces + veth + tc tbf' : 'shaping proxy on 127.0.0.1'}; WAN ${config.wanRateText}, RTT ${config.wanRttMs} ms`)
    const { adminUrl, adminToken } = await startServices(ctx)
    const admin = (args: string[]): CommandLine => ctx.net.hq(...trimswarm([...args, '--coordinator', adminUrl, '--token-file', adminToken]))
    const token = (await pm.run('token create', ...admin(['token', 'create', '--group', AGENT_GROUP, '--name', 'branch-bench']))).trim().split('\n').pop() ?? ''
    writeFileSync(ctx.agentToken, token + '\n', { mode: 0o600 })
    await pm.run('policy set', ...admin(['policy', 'set', AGENT_GROUP, '--images', IMAGE_NAME, '--lan-sharing', 'on', '--wan-limit', 'unlimited', '--index-linux', '']))
    const published = publishedVersions(config.scenarios)
    for (const [file, version] of published) {
      progress.line(`publishing ${file} as ${IMAGE_NAME}@${version} (on hq, not over the WAN)`)
      await pm.run(`publish ${version}`, ...admin(['publish', join(pre.images, file), '--image', IMAGE_NAME, '--version', version]))
    }
    const headerFile = join(work, 'admin.header')
    writeFileSync(headerFile, `authorization: Bearer ${readFileSync(adminToken, 'utf8').trim()}\n`, { mode: 0o600 })
    ctx.segmentTableStatus = async (version) => Number((await pm.run('segment table', ...ctx.net.hq('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', `@${headerFile}`,
      `${adminUrl}/v1/images/${IMAGE_NAME}/versions/${version}/segments`]))).trim())
    ctx.versionInfo = async (version) => JSON.parse(await pm.run('version info', ...ctx.net.hq('curl', ['-sS', '--fail', '-H', `@${headerFile}`, `${adminUrl}/v1/images/${IMAGE_NAME}/versions/${version}/info`]))) as { deltaPackBytes: number | null }
    notes.push(...net.notes)
    notes.push(`Plain HTTP baseline: each client runs \`curl | zstd -d\` of the whole image compressed with \`zstd -${HTTP_ZSTD_LEVEL}\`, served by bench/branch/serve.ts in hq.`)
    if (!pre.casync) notes.push('casync is not installed: its baseline did not run.')
    else notes.push('casync baseline: `casync make` (default chunk sizes) of both images into one store on hq, served over HTTP; clients run `casync extract` (update: `--seed=` the old image).')
    if (pre.bittorrent != null) notes.push(`BitTorrent baseline did not run: ${pre.bittorrent}.`)
    else notes.push(`BitTorrent baseline: a private torrent (DHT, LPD and peer exchange off), opentracker (whitelisted info hash) and one aria2c seed in hq, one aria2c per client in the branch with its own listen port. They connect directly over the veth (peers must see each other's addresses), so the --wan-rtt relay is NOT in their path: the WAN is shaped the same but without the added round trip. A client is done when aria2c's --on-bt-download-complete hook has decompressed (zstd -d) the image into place; it keeps seeding for the others until all are done (at most ${BT_LINGER_MAX_S} s), like trimswarm's --linger. The .torrent file reaches the clients out of band (a local file).`)
    notes.push('Before each method the bench runs `sync`: what the method before wrote (the page cache\'s dirty data) is on disk before the next one starts, not written back during it.')
    notes.push('trimswarm: each client runs `trimswarm agent sync NAME@VERSION --json` with its own data dir; cold and update with --no-index; the update starts from the v1 each agent synced in cold. An agent is done when its output file is replaced by the verified image (new inode, polled every sample); it may keep serving peers after that (--linger), which is in report.json as exitSeconds.')

    // the coordinator's background builds after the publishes (the segments of each version published, the delta pack;
    // one at a time, a minute or more each) burn hq's CPU, which the clients share here: every one is done before any
    // method is timed (cold alone measured beside next.img's build before: 8.8 CPU-s of the coordinator in trimswarm's
    // 20 s, docs/BENCHMARKS.md "Time to ready at 100 mbit")
    for (const [, version] of published) await waitForSegments(ctx, version)
    if (config.scenarios.includes('update')) await waitForDeltaPack(ctx)
    const results: MethodResult[] = []
    const ran = new Set<string>()
    for (const scenario of config.scenarios) {
      for (const method of config.methods) {
        let r: MethodResult
        if (method === 'casync' && !pre.casync) r = notRun(scenario, method, 'casync not installed')
        else if (method === 'bittorrent' && pre.bittorrent != null) r = notRun(scenario, method, pre.bittorrent)
        else if (scenario === 'trim' && (method === 'http' || method === 'casync') && ran.has(`cold/${method}`)) {
          // Neither can use host folders, so trim is the same transfer as cold: reuse, do not re-download. BitTorrent,
          // the baseline of issue 21's trim target, downloads again: measured in the same minutes as trimswarm's trim
          const cold = results.find(x => x.scenario === 'cold' && x.method === method)
          r = { ...(cold as MethodResult), scenario, note: SAME_AS_COLD }
        } else if (method === 'http') r = await runHttp(ctx, scenario)
        else if (method === 'casync') r = await runCasync(ctx, scenario)
        else if (method === 'bittorrent') r = await runBittorrent(ctx, scenario)
        else r = await runTrimswarm(ctx, scenario, ran.has('cold/trimswarm'))
        results.push(r)
        if (r.ran && r.note == null) ran.add(`${scenario}/${method}`)
      }
    }
    if (results.some(r => r.note === SAME_AS_COLD)) {
      notes.push('trim: the HTTP and casync rows repeat the cold run\'s figures: neither can take blocks from host folders, so their transfer is the same as cold.')
    }
    const report: BranchReport = {
      date: new Date().toISOString(),
      machine: machineDescription(),
      mode: net.mode,
      config: { agents: config.agents, wan: config.wanRateText, wanRttMs: config.wanRttMs, lan: config.lanRateText, images: pre.images, scenarios: [...config.scenarios] },
      notes,
      results
    }
    writeReport(report, config.outDir, config.wanRate)
    process.stdout.write(resultTable(results) + '\n')
    for (const r of results) {
      const a = accountingCheck(r)
      if (a != null) process.stdout.write(`${r.scenario}: trimswarm reported origin ${formatBytes(a.reported)} vs link hq->branch ${formatBytes(a.link)} (${formatBytes(a.linkPayload)} without headers): ${(a.difference * 100).toFixed(1)} % ${a.ok ? '(within 5 %)' : '(NOT within 5 %)'}; with headers ${(a.linkDifference * 100).toFixed(1)} %\n`)
    }
    process.stdout.write(`report: ${join(config.outDir, 'report.md')}\n`)
    const allOk = results.every(r => !r.ran || r.clients.every(c => c.ok && c.verified))
    return allOk ? 0 : 1
  } finally {
    progress.done()
    await cleanup()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('SIGHUP', onSignal)
    process.off('uncaughtException', onFatal)
    process.off('unhandledRejection', onFatal)
  }
}
