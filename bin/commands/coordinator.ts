/** `trimswarm coordinator --data DIR`: runs the coordinator until SIGTERM or SIGINT. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { loadCoordinatorConfig, type CoordinatorConfig } from '../../coordinator/config.ts'
import { ADMIN_TOKEN_FILE, COORDINATOR_MMAP_THRESHOLD_BYTES, DEFAULT_LISTEN, META_DB_DIR } from '../../coordinator/constants.ts'
import { ConfigError, DataDirLockedError } from '../../coordinator/errors.ts'
import { MetaStoreUnavailableError, SchemaTooNewError } from '../../coordinator/meta-store/errors.ts'
import type { FsckReport } from '../../coordinator/fsck.ts'
import type { S3BlockStore } from '../../coordinator/s3-block-store.ts'
import { InvalidImageError } from '../../chunker/errors.ts'
import { createLogger, defaultLogFormat, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../../coordinator/logger.ts'
import { CliError, EXIT, EXIT_DATA_DIR_IN_USE, requireString, UsageError, type Command, type CommandArgs } from '../cli-support.ts'
import { consoleToJsonLines } from '../json-console.ts'
import { reexecWith } from '../reexec.ts'
import { COORDINATOR_DATA, openDataDirReporting } from '../data-format.ts'

const usage = `Usage: trimswarm coordinator --data DIR [--listen HOST:PORT] [--config FILE] [--log-level LEVEL] [--log-format FORMAT]
       trimswarm coordinator fsck --data DIR [--config FILE] [--repair-from IMAGE]... [--json]

Runs the coordinator: the HTTP API under /v1 (auth, policy, images, origin,
events, reports), /healthz and /metrics. Stops cleanly on SIGTERM or SIGINT.

The first start creates DIR (mode 0700) with the manifest-signing key, the
session key and the admin token, written to DIR/${ADMIN_TOKEN_FILE} (mode 0600);
the output names that file but never shows the token (it would land in the
journal). Back up DIR to keep the coordinator's identity and data
(docs/OPERATIONS.md).

  --data DIR             data directory (created if missing)
  --listen HOST:PORT     where to listen (default: config "listen", else ${DEFAULT_LISTEN}); port 0 picks one
  --config FILE          JSON config: ldap, adminGroups, tls, limits, retention... (docs/CONFIGURATION.md)
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (default: config "logLevel", else info)
  --log-format FORMAT    ${LOG_FORMATS.join(' or ')} lines (default: json under systemd, text on a terminal,
                         else json)

fsck (the coordinator must be stopped) re-hashes every stored chunk, deletes
damaged ones, lists the chunks each version lacks, restores them from the
--repair-from image files (re-chunked; every chunk re-hashed), and marks the
versions still incomplete: the origin then refuses them (503) and never makes
one "latest". A later fsck that finds a version whole again unmarks it.
Exit status: 0 when every version is complete (after repair), 1 otherwise,
78 when the chunks are in an S3 bucket the config does not name or cannot reach.

  --config FILE          the coordinator's config, when its chunks are in S3 (blockStore.s3)
  --repair-from IMAGE    an image file holding the lost chunks' bytes (repeatable)
  --json                 print the report as JSON`

/** --log-format, checked; its default depends on where output goes (coordinator/logger.ts defaultLogFormat). */
function logFormatOption (value: unknown, usage: string): LogFormat {
  if (value == null) return defaultLogFormat()
  if (!(LOG_FORMATS as readonly unknown[]).includes(value)) {
    throw new UsageError(`--log-format must be ${LOG_FORMATS.join(' or ')}, got ${JSON.stringify(value)}\n\n${usage}`)
  }
  return value as LogFormat
}

/** The CLI's own status lines (stdout: start; stderr: stop), plain in text format, log lines in JSON so nothing plain is mixed in. */
function statusWriter (format: LogFormat): { out: (msg: string, fields?: Record<string, unknown>) => void, err: (msg: string) => void } {
  if (format === 'text') return { out: (msg) => process.stdout.write(msg + '\n'), err: (msg) => process.stderr.write(msg + '\n') }
  const out = createLogger({ format, write: (line) => process.stdout.write(line) })
  const err = createLogger({ format })
  return { out: (msg, fields) => { out.info(msg, fields) }, err: (msg) => { err.info(msg) } }
}

function printFsck (r: FsckReport): void {
  const out: string[] = [`checked ${r.chunksChecked} stored chunks: ${r.damaged.length} damaged, ${r.missing.length} needed chunks missing or damaged` +
    `, ${r.repaired.length} repaired`]
  for (const d of r.damaged) out.push(`damaged: ${d.cid} (${d.path}, deleted)`)
  for (const v of r.versions) {
    const mark = v.markChanged ? (v.complete ? ' (unmarked: served again)' : ' (marked incomplete: not served)') : ''
    out.push(`${v.image} ${v.version}: ${v.complete ? 'complete' : `INCOMPLETE, ${v.missing.length} of ${v.chunks} chunks missing`}${mark}`)
    for (const c of v.missing.slice(0, 10)) out.push(`  missing ${c}`)
    if (v.missing.length > 10) out.push(`  ... and ${v.missing.length - 10} more`)
  }
  out.push(r.incompleteVersions === 0 ? 'all versions complete' : `${r.incompleteVersions} versions incomplete`)
  process.stdout.write(out.join('\n') + '\n')
}

/** fsck's exit code for a config that does not let it reach the chunks: 78, EX_CONFIG of sysexits.h (1 means "incomplete versions"). */
const EXIT_FSCK_CONFIG = EXIT.config

async function fsck (args: CommandArgs): Promise<number> {
  if (args.positionals.length > 1) throw new UsageError(`unknown argument ${args.positionals[1]}\n\n${usage}`)
  for (const k of ['listen', 'log-level', 'log-format']) if (args.values[k] != null) throw new UsageError(`--${k} does not apply to fsck\n\n${usage}`)
  const dataDir = requireString(args, 'data', usage)
  if (!existsSync(join(dataDir, META_DB_DIR))) throw new CliError(`${dataDir} is not a coordinator data dir (no ${META_DB_DIR}/)`)
  await openDataDirReporting(dataDir, COORDINATOR_DATA)
  const repairFrom = (args.values['repair-from'] as string[] | undefined) ?? []
  const json = args.values.json === true
  const { runFsck } = await import('../../coordinator/fsck.ts')
  let report: FsckReport
  let s3: S3BlockStore | undefined
  try {
    const configFile = args.values.config as string | undefined
    const config = configFile != null ? await loadCoordinatorConfig(configFile) : undefined
    const s3Config = config?.blockStore?.s3
    if (s3Config != null) s3 = await (await import('../../coordinator/s3-block-store.ts')).openS3BlockStoreFromConfig({}, s3Config)
    const store = s3
    report = await runFsck({
      dataDir,
      repairFrom,
      onProgress: json ? undefined : (line) => process.stderr.write(line + '\n'),
      blockStore: store != null ? { store, locate: (cid) => `s3://${store.bucket}/${store.keyOf(cid)}` } : undefined,
      postgres: config?.metadata?.postgres
    })
  } catch (err) {
    if (err instanceof DataDirLockedError) throw new CliError(`${err.message}: stop it before running fsck`, { exitCode: EXIT_DATA_DIR_IN_USE })
    metaStoreFailure(err)
    if (err instanceof InvalidImageError) throw new CliError(`--repair-from: ${err.message}`)
    if (err instanceof ConfigError) throw new CliError(err.message, { exitCode: EXIT_FSCK_CONFIG })
    throw err
  } finally {
    s3?.close()
  }
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n')
  else printFsck(report)
  return report.ok ? 0 : 1
}

const command: Command = {
  summary: 'run the coordinator',
  usage,
  options: {
    data: { type: 'string' },
    listen: { type: 'string' },
    config: { type: 'string' },
    'log-level': { type: 'string' },
    'log-format': { type: 'string' },
    'repair-from': { type: 'string', multiple: true },
    json: { type: 'boolean' }
  },
  async run (args) {
    if (args.positionals[0] === 'fsck') return await fsck(args)
    if (args.values['repair-from'] != null || args.values.json != null) throw new UsageError(`--repair-from and --json belong to fsck\n\n${usage}`)
    if (args.positionals.length > 0) throw new UsageError(`unknown argument ${args.positionals[0]}\n\n${usage}`)
    const dataDir = requireString(args, 'data', usage)
    const logLevel = args.values['log-level'] as string | undefined
    if (logLevel != null && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
      throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}\n\n${usage}`)
    }
    const logFormat = logFormatOption(args.values['log-format'], usage)
    if (logFormat === 'json') consoleToJsonLines()
    const say = statusWriter(logFormat)
    // a long-running server: big freed buffers go back to the kernel (re-executes once, same PID)
    reexecWith({ glibcTunables: { 'glibc.malloc.mmap_threshold': COORDINATOR_MMAP_THRESHOLD_BYTES } })
    const configFile = args.values.config as string | undefined
    await openDataDirReporting(dataDir, COORDINATOR_DATA)
    // loaded after the re-exec, not before it as well
    const { createCoordinator } = await import('../../coordinator/coordinator.ts')
    const coordinator = await (async () => {
      try {
        const config: CoordinatorConfig = configFile != null ? await loadCoordinatorConfig(configFile) : {}
        const c = createCoordinator({ dataDir, listen: args.values.listen as string | undefined,
          config, logLevel: logLevel as LogLevel | undefined, logFormat })
        await c.start()
        return c
      } catch (err) {
        if (err instanceof DataDirLockedError) {
          throw new CliError(`${err.message}: stop it first, or give this one another --data dir`, { exitCode: EXIT_DATA_DIR_IN_USE })
        }
        metaStoreFailure(err)
        if (err instanceof ConfigError) throw new CliError(err.message)
        throw err
      }
    })()

    if (coordinator.adminTokenCreated) {
      // the token itself is never printed: under systemd, output lands in the journal
      const file = coordinator.adminTokenFile
      say.out(`first start: admin token written to ${file} (mode 0600; readable by this user only)`, { adminTokenFile: file })
    }
    say.out(`coordinator listening on ${coordinator.url}`, { url: coordinator.url })

    const code = await new Promise<number>((resolve) => {
      let stopping = false
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stopping) {
          say.err(`${signal} again: exiting without waiting`)
          process.exit(1)
        }
        stopping = true
        say.err(`${signal}: stopping (finishing requests, flushing the database)`)
        coordinator.stop().then(() => { resolve(0) }, (err: Error) => {
          say.err(`error while stopping: ${err.message}`)
          resolve(1)
        })
      }
      process.on('SIGTERM', onSignal)
      process.on('SIGINT', onSignal)
    })
    say.err('coordinator stopped')
    return code
  }
}

export default command

/** The shared metadata database (metadata.postgres) unreachable, or upgraded by a newer coordinator: one line and its exit code. */
function metaStoreFailure (err: unknown): void {
  if (err instanceof MetaStoreUnavailableError) throw new CliError(err.message, { exitCode: EXIT.unreachable })
  if (err instanceof SchemaTooNewError) throw new CliError(err.message, { exitCode: EXIT.dataDirTooNew })
}
