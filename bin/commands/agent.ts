/** `trimswarm agent`: sync an image, build the host index, or run the daemon. */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { setPriority } from 'node:os'
import { join, resolve } from 'node:path'
import { TRIMSWARM_VERSION } from '../../protocol/version.ts'
import {
  AGENT_NODE_FLAGS, DATA_FILES, DEFAULT_LINGER_SECONDS, DEFAULT_POLL_SECONDS, DEFAULT_SITE, NICE_PRIORITY, RETRY_ATTEMPTS, RETRY_BASE_MS, RETRY_MAX_MS
} from '../../peer-agent/constants.ts'
import { DEFAULT_LISTEN } from '../../peer-agent/swarm/constants.ts'
import { checkOutput, partialPathOf } from '../../peer-agent/output-guard.ts'
import { lockDataDir } from '../../peer-agent/data-dir-lock.ts'
import { stderrLogger } from '../../peer-agent/interface.ts'
import { AGENT_LOG_FORMATS, createAgentLogger } from '../../peer-agent/logger.ts'
import { createProgressReporter } from '../../peer-agent/progress-reporter.ts'
import {
  ChunkUnavailableError, CoordinatorUnreachableError, DataDirLockedError, DataDirUnsafeError, DiskFullError, DowngradeRefusedError, KeyPinError,
  OutputRefusedError, OutputReplacedError, PartialFileError, SyncIncompleteError
} from '../../peer-agent/errors.ts'
import { CliError, EXIT, EXIT_DATA_DIR_IN_USE, UsageError, requireString, type Command } from '../cli-support.ts'
import { consoleToJsonLines } from '../json-console.ts'
import { reexecWith } from '../reexec.ts'
import { AGENT_DATA, openDataDirReporting } from '../data-format.ts'
import { logFormatOption, parseSyncArgs, syncSummaryJson, syncSummaryLine, transferOption } from '../agent-support.ts'

const SYNC_USAGE = `Usage: trimswarm agent sync NAME[@VERSION] --coordinator URL (--token-file F | --user U --password-file F)
                            --data DIR --out PATH [--force] [options]

Brings PATH to exactly image NAME at VERSION (the latest version the policy allows
when no version is given), then exits. Blocks come from the partial file of an
interrupted run, the older version at PATH, the host index (--index folders, or the
policy's list), and the coordinator for the rest; every block is verified.
PATH is replaced atomically only when the whole image verifies; until then the
blocks go to a partial file beside it (.NAME.trimswarm-partial), kept for the
next run when the sync fails. An existing PATH this agent did not install is
left alone unless --force is given; a directory is refused.

Options
  --coordinator URL      coordinator base URL (http(s)://; or TRIMSWARM_COORDINATOR); repeatable: the next when one is down
  --token-file F         file holding a machine token (trimswarm token create; or
                         TRIMSWARM_TOKEN_FILE when --user is not given)
  --user U               user name to log in with (LDAP), with --password-file
  --password-file F      file holding the user's password
  --data DIR             the agent's data dir (pinned key, host index, checkpoints, events)
  --out PATH             the image file to bring to the version
  --force                replace PATH even when it is a file this agent did not install
  --index DIR            a folder to index for Trim Transfer (repeatable; default: the
                         policy's folders for this OS; --no-index to use none)
  --no-index             do not use the host index
  --wan-limit RATE       cap on bytes from the coordinator, with its unit: 20mbit (megabits
                         per second), 5MB/s (megabytes), 10MiB/s, 750kbit, 1gbit (default:
                         none; the policy's cap applies too: the stricter wins)
  --background           yield the WAN and LAN uploads to other traffic: bytes are paced
                         to keep the queueing delay they add under 60 ms, slower when
                         others' traffic raises it (default: foreground, full speed)
  --foreground           full speed (the default of agent sync)
  --nice                 run at the lowest CPU priority
  --site NAME            this agent's site (default: "${DEFAULT_SITE}"), only a hint: the
                         coordinator uses the site of the token (token create --site)
                         or of its sites subnet map when it has one
  --public-key KEY       the coordinator's public key (base64) instead of pinning it on
                         first contact
  --on-update CMD        shell command run after a new version is in place, with
                         TRIMSWARM_IMAGE, TRIMSWARM_VERSION, TRIMSWARM_PATH set
  --no-lan               no LAN sharing even when the policy allows it (lanSharing)
  --listen MULTIADDR     swarm listen address (repeatable; default ${DEFAULT_LISTEN}:
                         all interfaces, random port), e.g. /ip4/10.0.0.5/tcp/4100
  --no-mdns              no multicast DNS discovery (peers come from the coordinator
                         rendezvous for --site and the private DHT)
  --linger SECONDS       after the sync, keep serving peers until none has been
                         fetching from us for a moment, at most this long
                         (default ${DEFAULT_LINGER_SECONDS} s; 0 = exit at once)
  --json                 print one JSON summary on stdout:
                         {"version", "bytes": {"local", "peers", "origin"}, "seconds", ...;
                         "servedBytes": chunk bytes served to LAN peers, when LAN sharing ran;
                         "routinePeerEvents": peer events not shown, see --verbose}
  --retries N            tries per coordinator request on network errors/5xx, and per broken
                         block stream or delta pack download, once the coordinator has
                         answered (one that never answered fails at once) (default ${RETRY_ATTEMPTS} tries)
  --retry-delay MS       first retry delay in ms, doubled each try up to ${RETRY_MAX_MS / 1000} s
                         (default ${RETRY_BASE_MS} ms)
  --quiet                no progress output
  --verbose              log lines (sources, peers, swarm decisions) on stderr even
                         with --json or --quiet, and the routine peer events (a peer that
                         left, a reset stream) that are otherwise only counted
  --log-format FORMAT    text or json log lines on stderr (default: json under systemd,
                         else text); json shows no progress bar

Exit codes: 0 done (or already up to date), 2 bad usage, 3 credentials refused,
4 no such image or version, 5 coordinator unreachable, 6 verification failed,
7 local file problem (output refused, disk full), 75 data dir in use; all codes:
trimswarm --help.`

const INDEX_USAGE = `Usage: trimswarm agent index --data DIR --index DIR... [--json]

Builds or refreshes the host index (Trim Transfer) under DIR: new and changed files
are hashed, deleted ones dropped, unchanged ones skipped by size/mtime/inode.

Options
  --data DIR     the agent's data dir
  --index DIR    a folder to index (repeatable, required)
  --json         print the refresh statistics as JSON`

/** Runs `trimswarm agent index` for these folders as a child process; its warnings go to our stderr. */
async function buildIndexInChild (dataDir: string, folders: string[]): Promise<void> {
  const argv = [process.argv[1], 'agent', 'index', '--data', dataDir, ...folders.flatMap(folder => ['--index', folder]), '--json']
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'] })
  const code = await new Promise<number | null>((resolve) => { child.on('error', () => resolve(1)); child.on('close', resolve) })
  // not fatal: the sync refreshes (or builds) the index itself
  if (code !== 0) process.stderr.write(`warning: building the host index in a child process failed (exit ${code}); the sync builds it\n`)
}

/** Takes the data dir lock; a data dir held by another agent is one line and exit code 75, no stack trace. */
async function lockOrRefuse (dataDir: string): Promise<() => Promise<void>> {
  try {
    return await lockDataDir(dataDir)
  } catch (err) {
    throw agentCliError(err)
  }
}

/** Exit code of a sync that stopped on chunks the coordinator cannot serve and no peer had (its admin must act): no intact copy, a verification failure. */
export const EXIT_CHUNK_UNAVAILABLE = EXIT.verification

/**
 * Agent failures the user can act on become CliErrors: a message, no stack trace, the exit code of
 * the cause (75: data dir in use, 6: chunks unavailable). `partialNote` names the partial file the failed sync leaves behind.
 */
export function agentCliError (err: unknown, partialNote = ''): unknown {
  if (err instanceof DataDirLockedError) return new CliError(err.message, { cause: err, exitCode: EXIT_DATA_DIR_IN_USE })
  if (err instanceof ChunkUnavailableError) return new CliError(err.message + partialNote, { cause: err, exitCode: EXIT_CHUNK_UNAVAILABLE })
  if (err instanceof CoordinatorUnreachableError || err instanceof DiskFullError || err instanceof DataDirUnsafeError || err instanceof KeyPinError ||
    err instanceof SyncIncompleteError || err instanceof PartialFileError || err instanceof OutputReplacedError || err instanceof DowngradeRefusedError ||
    err instanceof OutputRefusedError) {
    return new CliError(err.message + partialNote, { cause: err })
  }
  if ((err as Error)?.name === 'AbortError' || String((err as Error)?.message) === 'interrupted') {
    return new CliError('interrupted; run the same command again to resume' + partialNote, { cause: err, exitCode: EXIT.failure })
  }
  if (partialNote !== '' && err instanceof Error) err.message += partialNote
  return err
}

/** "; partial file P kept ..." when a failed sync left one at `out`, else "". */
function partialNote (out: string): string {
  const partial = partialPathOf(resolve(out))
  return existsSync(partial) ? `; the partial file ${partial} is kept: run the same command to resume, or delete it` : ''
}

const authOptions = {
  coordinator: { type: 'string', multiple: true },
  'token-file': { type: 'string' },
  user: { type: 'string' },
  'password-file': { type: 'string' },
  data: { type: 'string' },
  retries: { type: 'string' },
  'retry-delay': { type: 'string' },
  'public-key': { type: 'string' }
} as const

const sync: Command = {
  summary: 'bring a local image file to a version',
  usage: SYNC_USAGE,
  options: {
    ...authOptions,
    out: { type: 'string' },
    force: { type: 'boolean' },
    index: { type: 'string', multiple: true },
    'no-index': { type: 'boolean' },
    'wan-limit': { type: 'string' },
    nice: { type: 'boolean' },
    background: { type: 'boolean' },
    foreground: { type: 'boolean' },
    site: { type: 'string' },
    'on-update': { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean' },
    verbose: { type: 'boolean' },
    'no-lan': { type: 'boolean' },
    listen: { type: 'string', multiple: true },
    'no-mdns': { type: 'boolean' },
    linger: { type: 'string' },
    'log-format': { type: 'string' }
  },
  async run (args) {
    reexecWith({ nodeFlags: AGENT_NODE_FLAGS })
    const opts = parseSyncArgs(args, SYNC_USAGE)
    const { request } = opts
    if (opts.nice) setPriority(NICE_PRIORITY)
    if (opts.logFormat === 'json') consoleToJsonLines()
    const logger = createAgentLogger({ format: opts.logFormat, quiet: (opts.quiet || opts.json) && !opts.verbose, verbose: opts.verbose })
    // the progress bar is plain text: no place among JSON lines
    const reporter = opts.quiet || opts.logFormat === 'json' ? undefined : createProgressReporter(process.stderr)
    const release = await prepareDataDir(opts.agent.dataDir, request.out, request.force, opts.agent.indexFolders)
    const abort = new AbortController()
    const onSignal = (): void => { abort.abort(new Error('interrupted')) }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    // loaded after the re-exec, not before it as well (libp2p and the rest: most of a second of start-up)
    const { createAgent } = await import('../../peer-agent/agent.ts')
    const agent = await createAgent({ logger, onProgress: reporter?.update }, opts.agent)
    try {
      // with LAN peers, the host index's refresh waits until they no longer fetch from us (below)
      const summary = await agent.syncImage({ ...request, deferIndexRefresh: agent.lan != null, signal: abort.signal })
      reporter?.done()
      // peers that started with us may still be fetching chunks only we hold
      if (agent.lan != null) {
        const lingered = performance.now()
        await agent.lan.linger(opts.linger * 1000, { signal: abort.signal })
        logger.info(`swarm: served LAN peers for ${((performance.now() - lingered) / 1000).toFixed(1)} s after the image was in place`)
      }
      await agent.refreshDeferredIndex({ signal: abort.signal })
      const routine = logger.hiddenDebug()
      process.stdout.write(opts.json ? syncSummaryJson(summary, routine, agent.lan?.servedBytes()) : syncSummaryLine(summary, routine))
    } catch (err) {
      throw agentCliError(err, partialNote(request.out))
    } finally {
      reporter?.done()
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      await agent.close()
      await release()
    }
  }
}

/**
 * Before the sync: the output checked (a directory, or a file this agent did not install, is
 * refused before anything else), the data dir locked and migrated, and a first host index
 * built in a child process. Returns what releases the lock.
 */
async function prepareDataDir (dataDir: string, out: string, force: boolean, indexFolders: string[] | undefined): Promise<() => Promise<void>> {
  await checkOutput(dataDir, out, { force })
  let release = await lockOrRefuse(dataDir) // a second agent is refused before it does anything
  await openDataDirReporting(dataDir, AGENT_DATA) // under the lock: one migration at a time, before anything is read
  if (indexFolders != null && indexFolders.length > 0 && !existsSync(join(dataDir, DATA_FILES.hostIndex))) {
    // the first build of a big index is the agent's most memory-hungry step: run it in its own
    // process, so its memory is returned before the sync starts (peak RSS, docs/BENCHMARKS.md);
    // the child takes the lock itself meanwhile
    await release()
    await buildIndexInChild(dataDir, indexFolders)
    release = await lockOrRefuse(dataDir)
  }
  return release
}

const index: Command = {
  summary: 'build or refresh the host index',
  usage: INDEX_USAGE,
  options: { data: { type: 'string' }, index: { type: 'string', multiple: true }, json: { type: 'boolean' } },
  async run (args) {
    reexecWith({ nodeFlags: AGENT_NODE_FLAGS })
    const dataDir = requireString(args, 'data', INDEX_USAGE)
    const folders = args.values.index as string[] | undefined
    if (folders == null || folders.length === 0) throw new UsageError(`--index is required\n\n${INDEX_USAGE}`)
    const release = await lockOrRefuse(dataDir)
    await openDataDirReporting(dataDir, AGENT_DATA)
    const { createHostIndex, describeRefresh } = await import('../../peer-agent/host-index.ts')
    const idx = createHostIndex({ logger: stderrLogger(args.values.json === true) }, { dbPath: join(dataDir, DATA_FILES.hostIndex), folders })
    try {
      const stats = await idx.refresh()
      process.stdout.write((args.values.json === true ? JSON.stringify(stats) : describeRefresh(stats)) + '\n')
    } finally {
      await idx.close()
      await release()
    }
  }
}

const RUN_USAGE = `Usage: trimswarm agent run --config FILE [--metrics-listen HOST:PORT] [--log-format FORMAT]

The daemon: keeps every image the policy assigns to this agent current, inside
the policy's update windows, checking every pollSeconds; runs onUpdate after each
new version; stops cleanly on SIGTERM or SIGINT (an interrupted sync resumes at
the next start). Config (JSON; relative paths are relative to the file):

  {
    "coordinator": "https://coordinator.example:8440",  (or "coordinators": [URL, ...]: failover)
    "tokenFile": "/etc/trimswarm/agent.token",      (or "user" + "passwordFile")
    "dataDir": "/var/lib/trimswarm",
    "images": { "workspace": "/var/lib/vms/workspace.img" },
    "outDir": "/var/lib/vms",                       (optional: NAME.img for other assigned images)
    "indexFolders": ["/usr", "/etc", "/var/lib"],    (optional: default the policy's list)
    "site": "branch-1",                             (optional hint, default "${DEFAULT_SITE}"; the
                                                     coordinator's site for the token wins)
    "pollSeconds": 300,                             (optional, default ${DEFAULT_POLL_SECONDS} s)
    "wanLimit": "20mbit",                           (optional; the policy's cap applies too)
    "transfer": "background",                       (optional: background or foreground; default
                                                     the policy's transfer, else background)
    "nice": true,                                   (optional: lowest CPU priority)
    "onUpdate": "systemctl restart workspace-vm",   (optional hook)
    "publicKey": "BASE64",                          (optional: instead of pinning on first contact)
    "lanSharing": true,                             (optional: false = never share with LAN peers,
                                                     even when the policy allows it)
    "listen": ["/ip4/0.0.0.0/tcp/4100"],            (optional swarm listen addresses; default all
                                                     interfaces, random port)
    "mdns": true                                    (optional: false = no multicast DNS discovery)
  }

With LAN sharing (policy lanSharing), the daemon keeps serving the images it holds
to the agents of its site.

  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics
                              (syncs, bytes by source, last success, errors, process);
                              no token: use 127.0.0.1 or a management network
  --log-format FORMAT         ${AGENT_LOG_FORMATS.join(' or ')} lines (default: json under systemd,
                              else text)
  --foreground                WAN transfers at full speed, whatever the config and policy say
  --background                WAN transfers yield to other traffic (the default)

docs/OPERATIONS.md "Running agents" has a systemd unit.`

const run: Command = {
  summary: 'the agent daemon',
  usage: RUN_USAGE,
  options: {
    config: { type: 'string' },
    'metrics-listen': { type: 'string' },
    'log-format': { type: 'string' },
    foreground: { type: 'boolean' },
    background: { type: 'boolean' }
  },
  async run (args) {
    reexecWith({ nodeFlags: AGENT_NODE_FLAGS })
    const file = requireString(args, 'config', RUN_USAGE)
    const format = logFormatOption(args, RUN_USAGE)
    if (format === 'json') consoleToJsonLines()
    const metricsListen = args.values['metrics-listen'] as string | undefined
    const { loadDaemonConfig, createDaemon } = await import('../../peer-agent/daemon.ts')
    const { createDaemonMetrics, parseHostPort, startMetricsServer } = await import('../../peer-agent/daemon-metrics.ts')
    if (metricsListen != null) {
      try { parseHostPort(metricsListen) } catch (err) { throw new UsageError(`--metrics-listen: ${(err as Error).message}\n\n${RUN_USAGE}`) }
    }
    const config = await loadDaemonConfig(file)
    config.transfer = transferOption(args, RUN_USAGE) ?? config.transfer
    if (config.nice) setPriority(NICE_PRIORITY)
    const release = await lockOrRefuse(config.dataDir)
    await openDataDirReporting(config.dataDir, AGENT_DATA)
    const abort = new AbortController()
    const stop = (): void => { abort.abort(new Error('stopping')) }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
    const logger = createAgentLogger({ format })
    const metrics = metricsListen != null ? createDaemonMetrics({ version: TRIMSWARM_VERSION }) : undefined
    let server: Awaited<ReturnType<typeof startMetricsServer>> | undefined
    try {
      if (metrics != null && metricsListen != null) {
        server = await startMetricsServer(metrics, metricsListen)
        logger.info(`metrics at ${server.url}/metrics`, { metricsUrl: `${server.url}/metrics` })
      }
      const daemon = await createDaemon({ logger, metrics }, config)
      logger.info(`agent daemon started: ${Object.keys(config.images).join(', ') || '(images from policy)'}; checking every ${config.pollSeconds} s`)
      await daemon.run({ signal: abort.signal })
      logger.info('agent daemon stopped')
    } catch (err) {
      throw agentCliError(err)
    } finally {
      await server?.close()
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      await release()
    }
  }
}

const agent: Command = {
  summary: 'branch-office client',
  usage: `Usage: trimswarm agent <command>

  sync NAME[@VERSION] ...   bring a local image file to a version, then exit
  index --data DIR ...      build or refresh the host index (Trim Transfer)
  run --config FILE         the daemon: keep assigned images current

Every command takes --help.`,
  subcommands: {
    sync: async () => sync,
    index: async () => index,
    run: async () => run
  }
}

export default agent
