/** Option parsing and output of the `trimswarm agent` commands (bin/commands/agent.ts; not itself a command: every file in bin/commands/ is one). */
import { multiaddr } from '@multiformats/multiaddr'
import { isValidName } from '../protocol/manifest.ts'
import { parseRate } from '../protocol/rate.ts'
import { DEFAULT_LINGER_SECONDS } from '../peer-agent/constants.ts'
import type { AgentAuth } from '../peer-agent/coordinator-client.ts'
import type { AgentInit, AgentSyncRequest } from '../peer-agent/agent.ts'
import type { SyncSummary } from '../peer-agent/image-sync.ts'
import { AGENT_LOG_FORMATS, defaultAgentLogFormat, type AgentLogFormat } from '../peer-agent/logger.ts'
import { formatBytes, plural } from '../peer-agent/progress-reporter.ts'
import { coordinatorUrlsOption, onePositional, requireString, tokenFileOption, UsageError, type CommandArgs } from './cli-support.ts'

/** The --token-file / --user + --password-file pair, checked. */
export function authFromArgs (args: CommandArgs, usage: string): AgentAuth {
  const tokenFile = args.values['token-file']
  const user = args.values.user
  const passwordFile = args.values['password-file']
  if (typeof tokenFile === 'string') {
    if (user != null || passwordFile != null) throw new UsageError(`use either --token-file or --user with --password-file, not both\n\n${usage}`)
    return { tokenFile }
  }
  if (typeof user === 'string' && typeof passwordFile === 'string') return { user, passwordFile }
  const envTokenFile = tokenFileOption(args)
  if (envTokenFile != null && user == null && passwordFile == null) return { tokenFile: envTokenFile }
  throw new UsageError(`authentication needed: --token-file F (or TRIMSWARM_TOKEN_FILE), or --user U with --password-file F\n\n${usage}`)
}

/** A whole-number option (undefined when not given). */
function intOption (args: CommandArgs, name: string, usage: string): number | undefined {
  const value = args.values[name]
  if (value == null) return undefined
  const number = Number(value)
  if (typeof value !== 'string' || !Number.isSafeInteger(number) || number < 0) {
    throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(value)}\n\n${usage}`)
  }
  return number
}

/** --listen multiaddrs, checked. */
function lanListen (args: CommandArgs, usage: string): string[] | undefined {
  const list = args.values.listen as string[] | undefined
  if (list == null) return undefined
  for (const address of list) {
    try {
      multiaddr(address)
    } catch {
      throw new UsageError(`--listen: ${JSON.stringify(address)} is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/4100)\n\n${usage}`)
    }
  }
  return list
}

/** --background / --foreground, checked (undefined: neither given). */
export function transferOption (args: CommandArgs, usage: string): 'background' | 'foreground' | undefined {
  const background = args.values.background === true
  const foreground = args.values.foreground === true
  if (background && foreground) throw new UsageError(`--background and --foreground exclude each other\n\n${usage}`)
  return background ? 'background' : foreground ? 'foreground' : undefined
}

/** --log-format, checked (default: peer-agent/logger.ts defaultAgentLogFormat). */
export function logFormatOption (args: CommandArgs, usage: string): AgentLogFormat {
  const value = args.values['log-format']
  if (value == null) return defaultAgentLogFormat()
  if (!(AGENT_LOG_FORMATS as readonly unknown[]).includes(value)) {
    throw new UsageError(`--log-format must be ${AGENT_LOG_FORMATS.join(' or ')}, got ${JSON.stringify(value)}\n\n${usage}`)
  }
  return value as AgentLogFormat
}

/** NAME or NAME@VERSION, checked. */
function imageTarget (args: CommandArgs, usage: string): { image: string, version?: string } {
  const target = onePositional(args, 'image (NAME or NAME@VERSION)', usage)
  const at = target.indexOf('@')
  const image = at < 0 ? target : target.slice(0, at)
  const version = at < 0 ? undefined : target.slice(at + 1)
  if (!isValidName(image)) throw new UsageError(`bad image name ${JSON.stringify(image)}\n\n${usage}`)
  if (version != null && !isValidName(version)) throw new UsageError(`bad version ${JSON.stringify(version)}\n\n${usage}`)
  return { image, version }
}

/** --index / --no-index: the folders (undefined: the policy's; []: none). */
function indexFoldersOption (args: CommandArgs, usage: string): string[] | undefined {
  const list = args.values.index as string[] | undefined
  if (args.values['no-index'] === true && list != null) throw new UsageError(`--index and --no-index exclude each other\n\n${usage}`)
  return args.values['no-index'] === true ? [] : list
}

/** Everything `agent sync` was asked, checked. */
export interface SyncArgs {
  agent: AgentInit
  request: Omit<AgentSyncRequest, 'signal'> & { force: boolean }
  /** Seconds to keep serving peers after the sync. */
  linger: number
  json: boolean
  quiet: boolean
  verbose: boolean
  logFormat: AgentLogFormat
  nice: boolean
}

/** Parses and checks the options of `agent sync` (every mistake a UsageError naming it). */
export function parseSyncArgs (args: CommandArgs, usage: string): SyncArgs {
  const { image, version } = imageTarget(args, usage)
  const coordinator = coordinatorUrlsOption(args, usage)
  const dataDir = requireString(args, 'data', usage)
  const out = requireString(args, 'out', usage)
  const auth = authFromArgs(args, usage)
  let wanLimit = 0
  if (typeof args.values['wan-limit'] === 'string') {
    try { wanLimit = parseRate(args.values['wan-limit']) } catch (err) { throw new UsageError(`--wan-limit: ${(err as Error).message}\n\n${usage}`) }
  }
  const site = args.values.site as string | undefined
  if (site != null && !isValidName(site)) throw new UsageError(`bad --site ${JSON.stringify(site)}\n\n${usage}`)
  const indexFolders = indexFoldersOption(args, usage)
  const retry = { attempts: intOption(args, 'retries', usage), baseMs: intOption(args, 'retry-delay', usage) }
  const listen = lanListen(args, usage)
  const linger = intOption(args, 'linger', usage) ?? DEFAULT_LINGER_SECONDS
  // a sync someone waits for runs at full speed unless told otherwise
  const transfer = transferOption(args, usage) ?? 'foreground'
  const logFormat = logFormatOption(args, usage)
  const lan = { enabled: args.values['no-lan'] !== true, listen, mdns: args.values['no-mdns'] !== true }
  const publicKey = args.values['public-key'] as string | undefined
  return {
    agent: { coordinator, auth, dataDir, indexFolders, wanLimit, transfer, site, publicKey, retry, lan },
    request: { image, version, out, force: args.values.force === true, onUpdate: args.values['on-update'] as string | undefined },
    linger,
    json: args.values.json === true,
    quiet: args.values.quiet === true,
    verbose: args.values.verbose === true,
    logFormat,
    nice: args.values.nice === true
  }
}

/** The --json summary line of a sync. */
export function syncSummaryJson (summary: SyncSummary, routinePeerEvents: number, servedBytes: number | undefined): string {
  return JSON.stringify({
    version: summary.version,
    bytes: summary.bytes,
    seconds: Math.round(summary.seconds * 1000) / 1000,
    image: summary.image,
    fromVersion: summary.fromVersion,
    out: summary.out,
    upToDate: summary.upToDate,
    size: summary.size,
    nonZeroBytes: summary.nonZeroBytes,
    discardedBlocks: summary.discardedBlocks,
    discardedChunks: summary.discardedChunks,
    chunksFetched: summary.chunksFetched,
    usedDeltaPack: summary.usedDeltaPack,
    blocksBySource: summary.blocksBySource,
    routinePeerEvents,
    ...(servedBytes != null ? { servedBytes } : {})
  }) + '\n'
}

/** The one line a sync prints for people. */
export function syncSummaryLine (summary: SyncSummary, routinePeerEvents: number): string {
  if (summary.upToDate) return `${summary.out} is already ${summary.image}@${summary.version}\n`
  const { local, peers, origin } = summary.bytes
  const discarded = summary.discardedBlocks + summary.discardedChunks > 0
    ? `; discarded ${plural(summary.discardedBlocks, 'block')} and ${plural(summary.discardedChunks, 'chunk')} that failed verification`
    : ''
  const routine = routinePeerEvents > 0 ? `; ${plural(routinePeerEvents, 'routine peer event')} (a peer that left, a reset stream; --verbose shows them)` : ''
  const from = `local ${formatBytes(local)}, peers ${formatBytes(peers)}, origin ${formatBytes(origin)} (of ${formatBytes(summary.nonZeroBytes)} data)`
  return `${summary.out} is now ${summary.image}@${summary.version} in ${summary.seconds.toFixed(1)} s: ${from}${discarded}${routine}\n`
}
