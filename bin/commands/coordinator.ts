/** `trimswarm coordinator --data DIR`: runs the coordinator until SIGTERM or SIGINT. */
import { join } from 'node:path'
import { loadCoordinatorConfig, type CoordinatorConfig } from '../../coordinator/config.ts'
import { ADMIN_TOKEN_FILE, DEFAULT_LISTEN } from '../../coordinator/constants.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { ConfigError, DataDirLockedError } from '../../coordinator/errors.ts'
import { LOG_LEVELS, type LogLevel } from '../../coordinator/logger.ts'
import { CliError, requireString, UsageError, type Command } from '../cli-support.ts'

const usage = `Usage: trimswarm coordinator --data DIR [--listen HOST:PORT] [--config FILE] [--log-level LEVEL]

Runs the coordinator: the HTTP API under /v1 (auth, policy, images, origin,
events, reports), /healthz and /metrics. Stops cleanly on SIGTERM or SIGINT.

The first start creates DIR (mode 0700) with the manifest-signing key, the
session key and the admin token, written to DIR/${ADMIN_TOKEN_FILE} (mode 0600)
and printed once. Back up DIR to keep the coordinator's identity and data
(docs/OPERATIONS.md).

  --data DIR             data directory (created if missing)
  --listen HOST:PORT     where to listen (default: config "listen", else ${DEFAULT_LISTEN}); port 0 picks one
  --config FILE          JSON config: ldap, adminGroups, tls, limits, retention... (docs/CONFIGURATION.md)
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (default: config "logLevel", else info)`

const command: Command = {
  summary: 'run the coordinator',
  usage,
  options: {
    data: { type: 'string' },
    listen: { type: 'string' },
    config: { type: 'string' },
    'log-level': { type: 'string' }
  },
  async run (args) {
    // later subcommands (e.g. `coordinator fsck`) take the first positional
    if (args.positionals.length > 0) throw new UsageError(`unknown argument ${args.positionals[0]}\n\n${usage}`)
    const dataDir = requireString(args, 'data', usage)
    const logLevel = args.values['log-level'] as string | undefined
    if (logLevel != null && !(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}\n\n${usage}`)
    const configFile = args.values.config as string | undefined
    const coordinator = await (async () => {
      try {
        const config: CoordinatorConfig = configFile != null ? await loadCoordinatorConfig(configFile) : {}
        const c = createCoordinator({ dataDir, listen: args.values.listen as string | undefined, config, logLevel: logLevel as LogLevel | undefined })
        await c.start()
        return c
      } catch (err) {
        if (err instanceof ConfigError || err instanceof DataDirLockedError) throw new CliError(err.message)
        throw err
      }
    })()

    if (coordinator.adminTokenCreated) {
      process.stdout.write(`first start: admin token written to ${join(dataDir, ADMIN_TOKEN_FILE)} (mode 0600); shown only now:\n${coordinator.adminToken}\n`)
    }
    process.stdout.write(`coordinator listening on ${coordinator.url}\n`)

    await new Promise<void>((resolve) => {
      let stopping = false
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stopping) {
          process.stderr.write(`${signal} again: exiting without waiting\n`)
          process.exit(1)
        }
        stopping = true
        process.stderr.write(`${signal}: stopping (finishing requests, flushing the database)\n`)
        coordinator.stop().then(resolve, (err: Error) => {
          process.stderr.write(`error while stopping: ${err.message}\n`)
          process.exitCode = 1
          resolve()
        })
      }
      process.on('SIGTERM', onSignal)
      process.on('SIGINT', onSignal)
    })
    process.stderr.write('coordinator stopped\n')
  }
}

export default command
