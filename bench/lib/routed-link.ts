/**
 * A WAN whose bottleneck queue is in a router, not in a sender's own qdisc:
 * three network namespaces hq - rt - branch, joined by two veth pairs, the
 * router forwarding between them and shaping both directions with tc tbf
 * (rate, and a queue of `queueMs`). bench/branch/network.ts shapes the
 * senders' own egress instead, where Linux's TCP small queues keep every TCP
 * flow's queue at a millisecond or so: no flow ever builds the standing queue
 * a real bottleneck (a DSL or cable modem) holds, and a delay-based
 * background mode has nothing to yield to. The round trip is added by
 * bench/branch/relay.ts in hq, as there.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { parseNetDev } from '../branch/counters.ts'
import { tbfBurst, tcRate } from '../branch/flags.ts'
import { startRelayIn, type CommandLine } from '../branch/network.ts'
import type { ProcessManager } from '../branch/processes.ts'

/** hq's address, where its services listen (through the relay). */
export const ROUTED_HQ_ADDRESS = '10.78.1.1'
/** The branch's address. */
export const ROUTED_BRANCH_ADDRESS = '10.78.2.1'

/** The three-namespace link. */
export interface RoutedLink {
  hq: (cmd: string, args: string[]) => CommandLine
  branch: (cmd: string, args: string[]) => CommandLine
  /** Starts the delaying relay in hq: `hq:frontPort` -> `127.0.0.1:backendPort`; returns front addresses. */
  startRelay: (services: Array<{ frontPort: number, backendPort: number }>) => Promise<string[]>
  /** Bytes the router sent toward the branch so far, with the time. */
  sampleDown: () => { t: number, bytes: number }
  notes: string[]
  teardown: () => Promise<void>
}

/** Options of the link. */
export interface RoutedLinkInit {
  /** Unique per run (names). */
  id: number
  /** Bytes per second, each direction. */
  rate: number
  queueMs: number
  rttMs: number
  /**
   * TCP congestion control of connections across the link (a route's congctl: a namespace may only
   * choose from net.ipv4.tcp_allowed_congestion_control by sysctl). A loss-based one (cubic, as most
   * servers run) fills the router's queue, which a delay-based background mode reacts to; bbr keeps it short.
   */
  cc?: string
}

function ip (args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Names of run `id`'s namespaces (hq and branch as bench/branch/network.ts names them, so its stale-namespace sweep finds them). */
export function routedNames (id: number): { hq: string, rt: string, branch: string } {
  return { hq: `ts-hq-${id}`, rt: `ts-rt-${id}`, branch: `ts-br-${id}` }
}

/** Builds the namespaces, the veths, routes and shaping; removes them again if a step fails. */
export async function createRoutedLink (pm: ProcessManager, init: RoutedLinkInit): Promise<RoutedLink> {
  const n = routedNames(init.id)
  const v = { hq: `tsqh${init.id}`, rtUp: `tsqu${init.id}`, rtDown: `tsqd${init.id}`, br: `tsqb${init.id}` }
  let torn = false
  const teardown = async (): Promise<void> => {
    if (torn) return
    torn = true
    for (const ns of [n.hq, n.rt, n.branch]) {
      try { ip(['netns', 'del', ns]) } catch { /* not made */ }
    }
  }
  let holder = 0
  try {
    for (const ns of [n.hq, n.rt, n.branch]) ip(['netns', 'add', ns])
    ip(['link', 'add', v.hq, 'netns', n.hq, 'type', 'veth', 'peer', 'name', v.rtUp, 'netns', n.rt])
    ip(['link', 'add', v.rtDown, 'netns', n.rt, 'type', 'veth', 'peer', 'name', v.br, 'netns', n.branch])
    const ends: Array<[string, string, string]> = [[n.hq, v.hq, `${ROUTED_HQ_ADDRESS}/24`], [n.rt, v.rtUp, '10.78.1.2/24'], [n.rt, v.rtDown, '10.78.2.2/24'], [n.branch, v.br, `${ROUTED_BRANCH_ADDRESS}/24`]]
    for (const [ns, dev, addr] of ends) {
      ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      ip(['-n', ns, 'addr', 'add', addr, 'dev', dev])
      // one frame per packet, as on a real link (see bench/branch/network.ts)
      ip(['-n', ns, 'link', 'set', 'dev', dev, 'gso_max_size', '1500', 'gso_max_segs', '1'])
      ip(['-n', ns, 'link', 'set', dev, 'up'])
    }
    const congctl = init.cc != null ? ['congctl', init.cc] : []
    ip(['-n', n.hq, 'route', 'add', 'default', 'via', '10.78.1.2', ...congctl])
    ip(['-n', n.branch, 'route', 'add', 'default', 'via', '10.78.2.2', ...congctl])
    execFileSync('ip', ['netns', 'exec', n.rt, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { stdio: 'ignore' })
    for (const dev of [v.rtUp, v.rtDown]) {
      execFileSync('tc', ['-n', n.rt, 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', tcRate(init.rate), 'burst', String(tbfBurst(init.rate, 1500)), 'latency', `${init.queueMs}ms`], { stdio: ['ignore', 'pipe', 'pipe'] })
    }
    const h = pm.spawn(`holder ${n.rt}`, 'ip', ['netns', 'exec', n.rt, 'sleep', 'infinity'])
    holder = h.pid
    const deadline = Date.now() + 5000
    while (!readFileSync(`/proc/${holder}/net/dev`, 'utf8').includes(v.rtDown)) {
      if (Date.now() > deadline) throw new Error(`could not enter namespace ${n.rt}`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  } catch (err) {
    await teardown()
    throw err
  }
  const wrap = (ns: string) => (cmd: string, args: string[]): CommandLine => ['ip', ['netns', 'exec', ns, cmd, ...args]]
  return {
    hq: wrap(n.hq),
    branch: wrap(n.branch),
    async startRelay (services) {
      return await startRelayIn(pm, { netns: n.hq, host: ROUTED_HQ_ADDRESS, rttMs: init.rttMs, services })
    },
    sampleDown () {
      let bytes = 0
      try { bytes = parseNetDev(readFileSync(`/proc/${holder}/net/dev`, 'utf8')).get(v.rtDown)?.tx ?? 0 } catch {}
      return { t: performance.now(), bytes }
    },
    notes: [
      `Namespaces ${n.hq} - ${n.rt} - ${n.branch}; ${n.rt} forwards and shapes each direction with \`tc tbf rate ${tcRate(init.rate)} latency ${init.queueMs}ms\` (a router's queue, which TCP small queues do not keep short as they do a sender's own qdisc); TCP across it: ${init.cc ?? 'the system default'}.`,
      init.rttMs > 0 ? `Round trip: bench/branch/relay.ts in ${n.hq} holds every byte ${init.rttMs / 2} ms each way (it terminates TCP).` : 'No round trip added.'
    ],
    teardown
  }
}
