/**
 * Command-line flags of `npm run bench -- branch`, parsed and checked once
 * into a BranchConfig. Pure (no file system, no processes), so it is unit-tested.
 */
import { parseArgs } from 'node:util'
import { parseRate } from '../../protocol/rate.ts'
import {
  DEFAULT_AGENTS, DEFAULT_LAN_RATE, DEFAULT_WAN_RATE, DEFAULT_WAN_RTT_MS, MAX_AGENTS, SCENARIOS, V1, V2
} from './constants.ts'
import type { Scenario } from './constants.ts'

/**
 * The image files the run publishes, with their versions: base.img as v1 always, next.img as v2 only
 * for the update. A version published and not needed would have its segments and delta pack built in
 * the background, minutes of the coordinator's CPU that the run waits for before timing any method.
 */
export function publishedVersions (scenarios: readonly Scenario[]): Array<[file: string, version: string]> {
  return scenarios.includes('update') ? [['base.img', V1], ['next.img', V2]] : [['base.img', V1]]
}

/** Everything one benchmark run needs to know, checked. */
export interface BranchConfig {
  agents: number
  /** WAN rate, bytes per second (> 0: a branch link is never unlimited here). */
  wanRate: number
  wanRateText: string
  /** Round-trip time added on the WAN path by the delaying relay, ms (0 = no relay). */
  wanRttMs: number
  /** LAN rate between agents, bytes per second; 0 = not shaped. */
  lanRate: number
  lanRateText: string
  /** Scenarios to run, in run order (cold before update: update starts from cold's v1). */
  scenarios: Scenario[]
  imagesDir?: string
  outDir: string
  /** Use the 127.0.0.1 shaping proxy instead of network namespaces. */
  proxy: boolean
  /** Keep the work folder (coordinator data, agent data, outputs) for inspection. */
  keep: boolean
  /** Host folders indexed in the trim scenario. */
  indexDirs: string[]
  /** Methods to run (all by default). */
  methods: Method[]
  /** Only rebuild report.md and the charts of this earlier run's folder from its report.json. */
  rerender?: string
  /** trimswarm agents log every step (--verbose, JSON lines with times) into outDir/agent-logs/ (where their time goes). */
  agentLogs: boolean
  /** Run the checkout's TypeScript sources instead of the CLI as shipped (scripts/build.sh's bundle). */
  fromSource: boolean
}

/** The ways a branch gets an image. */
export type Method = 'http' | 'casync' | 'bittorrent' | 'trimswarm'

/** All methods in report order. */
export const METHODS: readonly Method[] = ['http', 'casync', 'bittorrent', 'trimswarm']

/** A user mistake on the command line: printed without a stack, exit code 2. */
export class BranchUsageError extends Error {
  static override name = 'BranchUsageError'
  override name = 'BranchUsageError'
}

/** node:util parseArgs option table. */
export const options = {
  agents: { type: 'string' },
  wan: { type: 'string' },
  'wan-rtt': { type: 'string' },
  lan: { type: 'string' },
  scenario: { type: 'string' },
  images: { type: 'string' },
  out: { type: 'string' },
  index: { type: 'string', multiple: true },
  methods: { type: 'string' },
  proxy: { type: 'boolean' },
  keep: { type: 'boolean' },
  rerender: { type: 'string' },
  'agent-logs': { type: 'boolean' },
  'from-source': { type: 'boolean' }
} as const

function rate (flag: string, text: string, allowZero: boolean): number {
  let value: number
  try {
    value = parseRate(text)
  } catch (err) {
    throw new BranchUsageError(`--${flag}: ${(err as Error).message}`)
  }
  if (value === 0 && !allowZero) throw new BranchUsageError(`--${flag} must be a finite rate (e.g. 50mbit), not ${JSON.stringify(text)}`)
  return value
}

/** Parses argv into a BranchConfig; throws BranchUsageError on any mistake. */
export function parseBranchFlags (argv: string[], defaults: { outDir: string }): BranchConfig {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false })
  } catch (err) {
    throw new BranchUsageError((err as Error).message)
  }
  const v = parsed.values
  const agentsText = v.agents ?? String(DEFAULT_AGENTS)
  if (!/^\d+$/.test(agentsText) || Number(agentsText) < 1 || Number(agentsText) > MAX_AGENTS) {
    throw new BranchUsageError(`--agents must be an integer from 1 to ${MAX_AGENTS}, not ${JSON.stringify(agentsText)}`)
  }
  const rttText = v['wan-rtt'] ?? String(DEFAULT_WAN_RTT_MS)
  const rttMatch = /^(\d+(?:\.\d+)?)\s*(ms)?$/.exec(rttText.trim())
  if (rttMatch == null || Number(rttMatch[1]) > 10_000) {
    throw new BranchUsageError(`--wan-rtt must be milliseconds from 0 to 10000 (e.g. 40 or 40ms), not ${JSON.stringify(rttText)}`)
  }
  const scenarioText = v.scenario ?? 'all'
  let scenarios: Scenario[]
  if (scenarioText === 'all') scenarios = [...SCENARIOS]
  else {
    const names = scenarioText.split(',').map(s => s.trim())
    for (const n of names) {
      if (!(SCENARIOS as readonly string[]).includes(n)) {
        throw new BranchUsageError(`unknown scenario ${JSON.stringify(n)}: use one of ${SCENARIOS.join(', ')} or all`)
      }
    }
    scenarios = SCENARIOS.filter(s => names.includes(s))
  }
  let methods: Method[] = [...METHODS]
  if (v.methods != null) {
    const names = v.methods.split(',').map(s => s.trim())
    for (const n of names) {
      if (!(METHODS as readonly string[]).includes(n)) throw new BranchUsageError(`unknown method ${JSON.stringify(n)}: use ${METHODS.join(', ')}`)
    }
    methods = METHODS.filter(m => names.includes(m))
  }
  const wanText = v.wan ?? DEFAULT_WAN_RATE
  const lanText = v.lan ?? DEFAULT_LAN_RATE
  return {
    agents: Number(agentsText),
    wanRate: rate('wan', wanText, false),
    wanRateText: wanText,
    wanRttMs: Number(rttMatch[1]),
    lanRate: rate('lan', lanText, true),
    lanRateText: lanText,
    scenarios,
    imagesDir: v.images,
    outDir: v.out ?? defaults.outDir,
    proxy: v.proxy === true,
    keep: v.keep === true,
    indexDirs: v.index ?? ['/usr', '/etc', '/var/lib'],
    methods,
    rerender: v.rerender,
    agentLogs: v['agent-logs'] === true,
    fromSource: v['from-source'] === true
  }
}

/** tc's rate syntax for bytes per second (bits per second, integer). */
export function tcRate (bytesPerSecond: number): string {
  return `${Math.round(bytesPerSecond * 8)}bit`
}

/**
 * tbf burst for a rate: at least one timer tick's worth of bytes (HZ may be
 * 100) and never below the interface MTU plus headroom, or tbf drops every packet
 * larger than the bucket.
 */
export function tbfBurst (bytesPerSecond: number, mtu: number): number {
  return Math.max(Math.ceil(bytesPerSecond / 100), 2 * mtu + 1024, 32 * 1024)
}
