/**
 * The benchmark's network: either real (two network namespaces "hq" and
 * "branch" joined by a veth pair, the WAN, shaped by tc tbf in both
 * directions; a delaying relay in hq adds the round trip), or, when namespaces
 * cannot be made (not root), a shaping relay on 127.0.0.1. Both give the
 * runner the same thing: a way to run a command on each side, the address
 * clients use for each hq service, and byte counters of the WAN and the LAN.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { once } from 'node:events'
import type { ProcessManager } from './processes.ts'
import { parseNetDev } from './counters.ts'
import type { IfaceCounters } from './counters.ts'
import type { Sample } from './counters.ts'
import { startRelay } from './relay.ts'
import type { Relay } from './relay.ts'
import { tbfBurst, tcRate } from './flags.ts'
import { BACKEND_PORT_OFFSET, BRANCH_ADDRESS, HQ_ADDRESS, WAN_PREFIX } from './constants.ts'

/** A command line to spawn. */
export type CommandLine = [cmd: string, args: string[]]

/** The network a run uses. */
export interface Network {
  mode: 'netns' | 'proxy'
  /** Lines for the report's notes: what was built and how it is measured. */
  notes: string[]
  /** Wraps a command so it runs in hq (coordinator side). */
  hq: (cmd: string, args: string[]) => CommandLine
  /** Wraps a command so it runs in the branch (clients' side). */
  branch: (cmd: string, args: string[]) => CommandLine
  /** A port for a service inside hq (where it listens, on `listenHost`). */
  backendPort: (frontPort: number) => Promise<number>
  /**
   * The address hq services listen on: 127.0.0.1 behind a relay; 0.0.0.0 (inside hq: its loopback
   * and the veth) when nothing relays, so clients reach them over the veth directly, as BitTorrent's do.
   */
  listenHost: string
  /**
   * Starts the WAN path to hq services: clients connect to the returned
   * host:port, which crosses the shaped link and the delay to the backend port.
   */
  startWan: (services: Array<{ frontPort: number, backendPort: number }>) => Promise<string[]>
  /** Current counters. */
  sample: () => Sample
  /** Whether LAN bytes come from interface counters (else from trimswarm's report). */
  lanMeasured: boolean
  /** Removes everything this network created (idempotent). */
  teardown: () => Promise<void>
}

/** Options of a network. */
export interface NetworkInit {
  /** Unique per run (used in namespace and interface names). */
  id: number
  wanRate: number
  wanRttMs: number
  lanRate: number
  /** Longest queue of the WAN's tbf, ms (its `latency`); default 200. */
  queueMs?: number
}

/** Names of the namespaces and interfaces of run `id` (veth names must fit IFNAMSIZ, 15 characters). */
export function netnsNames (id: number): { hq: string, branch: string, hqVeth: string, branchVeth: string } {
  return { hq: `ts-hq-${id}`, branch: `ts-br-${id}`, hqVeth: `tsh${id}`, branchVeth: `tsb${id}` }
}

const ZERO = { rx: 0, tx: 0, rxPackets: 0, txPackets: 0 }

function ip (args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function tc (args: string[]): void {
  execFileSync('tc', args, { stdio: ['ignore', 'pipe', 'pipe'] })
}

/**
 * Deletes namespaces of earlier runs whose process is gone (a run killed with
 * SIGKILL cannot clean up). Only names this benchmark makes are touched.
 */
export function removeStaleNamespaces (): string[] {
  let list = ''
  try { list = ip(['netns', 'list']) } catch { return [] }
  const removed: string[] = []
  for (const line of list.split('\n')) {
    const m = /^(ts-(?:hq|br|rt)-(\d+))\b/.exec(line.trim())
    if (m == null) continue
    const pid = Number(m[2])
    if (pid === process.pid || isAlive(pid)) continue
    try { ip(['netns', 'del', m[1]]); removed.push(m[1]) } catch { /* raced with someone else */ }
  }
  return removed
}

function isAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Builds the namespaces, the veth WAN and its shaping. Cleans up after itself if any step fails. */
export async function createNetnsNetwork (pm: ProcessManager, init: NetworkInit): Promise<Network> {
  const n = netnsNames(init.id)
  let torn = false
  const teardown = async (): Promise<void> => {
    if (torn) return
    torn = true
    // Processes inside were killed by the caller's ProcessManager; deleting a namespace also destroys its veth end.
    for (const ns of [n.hq, n.branch]) {
      try { ip(['netns', 'del', ns]) } catch { /* not created or already gone */ }
    }
  }
  const holders: Record<string, number> = {}
  try {
    ip(['netns', 'add', n.hq])
    ip(['netns', 'add', n.branch])
    ip(['link', 'add', n.hqVeth, 'netns', n.hq, 'type', 'veth', 'peer', 'name', n.branchVeth, 'netns', n.branch])
    for (const [ns, dev, addr] of [[n.hq, n.hqVeth, HQ_ADDRESS], [n.branch, n.branchVeth, BRANCH_ADDRESS]]) {
      ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      ip(['-n', ns, 'addr', 'add', `${addr}/${WAN_PREFIX}`, 'dev', dev])
      // A real WAN carries frames of at most one MTU; without this the veth passes (and counts) 64 KiB
      // segmentation-offload super-packets with one set of headers, hiding most of the header bytes.
      ip(['-n', ns, 'link', 'set', 'dev', dev, 'gso_max_size', '1500', 'gso_max_segs', '1'])
      ip(['-n', ns, 'link', 'set', dev, 'up'])
      // Egress shaping on each end = both directions of the WAN.
      tc(['-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', tcRate(init.wanRate), 'burst', String(tbfBurst(init.wanRate, 1500)), 'latency', `${init.queueMs ?? 200}ms`])
    }
    if (init.lanRate > 0) {
      // Every agent lives in the branch namespace, so agent-to-agent traffic is on its loopback (MTU 65536).
      tc(['-n', n.branch, 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', tcRate(init.lanRate), 'burst', String(tbfBurst(init.lanRate, 65536)), 'latency', '200ms'])
    }
    for (const ns of [n.hq, n.branch]) {
      const c = pm.spawn(`holder ${ns}`, 'ip', ['netns', 'exec', ns, 'sleep', 'infinity'])
      holders[ns] = c.pid
    }
    // The holders' /proc/<pid>/net/dev shows their namespace's counters; wait until they are in it.
    const deadline = Date.now() + 5000
    for (const ns of [n.hq, n.branch]) {
      while (!readFileSync(`/proc/${holders[ns]}/net/dev`, 'utf8').includes(ns === n.hq ? n.hqVeth : n.branchVeth)) {
        if (Date.now() > deadline) throw new Error(`could not enter namespace ${ns}`)
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    }
  } catch (err) {
    await pm.killAll()
    await teardown()
    throw err
  }
  const readIface = (ns: string, dev: string): IfaceCounters => {
    try {
      return parseNetDev(readFileSync(`/proc/${holders[ns]}/net/dev`, 'utf8')).get(dev) ?? ZERO
    } catch {
      return ZERO
    }
  }
  const wrap = (ns: string) => (cmd: string, args: string[]): CommandLine => ['ip', ['netns', 'exec', ns, cmd, ...args]]
  return {
    mode: 'netns',
    notes: [
      `Network namespaces ${n.hq} (coordinator, HTTP server) and ${n.branch} (every client, one process each), joined by a veth pair ${n.hqVeth}/${n.branchVeth} (${HQ_ADDRESS}/${WAN_PREFIX} - ${BRANCH_ADDRESS}); the WAN is shaped by \`tc qdisc tbf rate ${tcRate(init.wanRate)}\` on the egress of both ends (each direction).`,
      init.wanRttMs > 0
        ? `Round trip: netem is not available on this kernel, so a user-space relay in ${n.hq} (bench/branch/relay.ts) holds every byte ${init.wanRttMs / 2} ms in each direction between the veth and the services. It terminates TCP, so it adds request/response latency but not the effect of a long RTT on TCP's congestion window.`
        : `No round trip added (--wan-rtt 0): no relay either; the services in ${n.hq} listen on the veth and every client reaches them directly, as the BitTorrent peers do (a user-space relay would cost the clients of the services, not BitTorrent's, CPU and a hop).`,
      `WAN bytes = rx + tx of ${n.hqVeth} (/proc/<pid>/net/dev of a process in ${n.hq}) sampled every 250 ms, with segmentation offload limited to one 1500-byte frame so every packet is counted with its Ethernet/IP/TCP headers (66 bytes per packet here) and every ACK: what a real link carries. The accounting check also removes the headers (packets x 66 bytes) to compare payloads.`,
      init.lanRate > 0
        ? `LAN: all clients share ${n.branch}, so client-to-client traffic crosses its loopback, shaped by tbf at ${tcRate(init.lanRate)}; LAN bytes = tx bytes of that loopback.`
        : `LAN: all clients share ${n.branch}, so client-to-client traffic crosses its loopback (not shaped); LAN bytes = tx bytes of that loopback.`
    ],
    hq: wrap(n.hq),
    branch: wrap(n.branch),
    backendPort: async (frontPort) => frontPort + BACKEND_PORT_OFFSET,
    listenHost: init.wanRttMs > 0 ? '127.0.0.1' : '0.0.0.0',
    async startWan (services) {
      if (init.wanRttMs === 0) return services.map(s => `${HQ_ADDRESS}:${s.backendPort}`)
      return await startRelayIn(pm, { netns: n.hq, host: HQ_ADDRESS, rttMs: init.wanRttMs, services })
    },
    sample: () => {
      const wan = readIface(n.hq, n.hqVeth)
      const lo = readIface(n.branch, 'lo')
      return { t: performance.now(), wanDown: wan.tx, wanUp: wan.rx, lan: lo.tx, wanDownPackets: wan.txPackets, wanUpPackets: wan.rxPackets }
    },
    lanMeasured: true,
    teardown
  }
}

/**
 * Starts bench/branch/relay.ts in namespace `netns`: `host:frontPort` -> `127.0.0.1:backendPort`, holding
 * every byte half of `rttMs` in each direction; resolves to the front addresses once it listens.
 */
export async function startRelayIn (pm: ProcessManager, init: { netns: string, host: string, rttMs: number, services: Array<{ frontPort: number, backendPort: number }> }): Promise<string[]> {
  const relay = pm.spawn('wan relay', 'ip', ['netns', 'exec', init.netns, process.execPath, new URL('./relay.ts', import.meta.url).pathname,
    '--delay-ms', String(init.rttMs / 2),
    ...init.services.flatMap(s => ['--map', `${init.host}:${s.frontPort}=127.0.0.1:${s.backendPort}`])])
  await waitReady(relay.onLine, relay.exited, 'wan relay', relay.stderr)
  return init.services.map(s => `${init.host}:${s.frontPort}`)
}

/** Resolves when a child prints a line starting with "ready"; rejects if it exits first or takes too long. */
export async function waitReady (onLine: (f: (l: string) => void) => void, exited: Promise<unknown>, name: string, stderr: () => string, timeoutMs = 15_000): Promise<string> {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${timeoutMs} ms: ${stderr().slice(-500)}`)), timeoutMs)
    onLine(l => { if (l.startsWith('ready')) { clearTimeout(timer); resolve(l) } })
    void exited.then(() => { clearTimeout(timer); reject(new Error(`${name} exited early: ${stderr().slice(-500)}`)) })
  })
}

async function freePort (): Promise<number> {
  const s = createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const addr = s.address()
  const port = typeof addr === 'object' && addr != null ? addr.port : 0
  await new Promise(resolve => s.close(resolve))
  return port
}

/** The fallback without root: everything on 127.0.0.1, the WAN a shaping, delaying, counting relay in this process. */
export async function createProxyNetwork (init: NetworkInit): Promise<Network> {
  let relay: Relay | undefined
  return {
    mode: 'proxy',
    notes: [
      'Not root, so no network namespaces: every process runs on 127.0.0.1 and the WAN is a relay in the benchmark process (bench/branch/relay.ts) with a token bucket per direction at the --wan rate and the --wan-rtt delay.',
      'WAN bytes = payload bytes the relay forwarded (no TCP/IP headers: slightly below what a real link carries).',
      'LAN bytes cannot be told apart from other loopback traffic here: the LAN column shows trimswarm\'s own reported peer bytes, and --lan is not applied.'
    ],
    hq: (cmd, args) => [cmd, args],
    branch: (cmd, args) => [cmd, args],
    backendPort: async () => await freePort(),
    listenHost: '127.0.0.1',
    async startWan (services) {
      relay = await startRelay({
        mappings: services.map(s => ({ listenHost: '127.0.0.1', listenPort: 0, targetHost: '127.0.0.1', targetPort: s.backendPort })),
        oneWayDelayMs: init.wanRttMs / 2,
        rate: init.wanRate
      })
      return relay.ports.map(p => `127.0.0.1:${p}`)
    },
    sample: () => {
      const c = relay?.counters() ?? { down: 0, up: 0 }
      return { t: performance.now(), wanDown: c.down, wanUp: c.up, lan: 0, wanDownPackets: 0, wanUpPackets: 0 }
    },
    lanMeasured: false,
    async teardown () {
      await relay?.stop()
      relay = undefined
    }
  }
}
