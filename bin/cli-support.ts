/**
 * What every CLI command shares: option parsing with --help, and one way of
 * turning errors into a message and an exit code (no stack traces for user
 * mistakes; TRIMSWARM_DEBUG=1 shows them).
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { TrimswarmError } from '../protocol/errors.ts'
import { parseCoordinatorUrls } from '../client/coordinator-http.ts'
import { CoordinatorUrlError } from '../client/errors.ts'

/**
 * Exit codes of every trimswarm command, one per kind of failure a script may handle
 * differently (docs/OPERATIONS.md "Exit codes", `trimswarm --help`).
 */
export const EXIT = {
  ok: 0,
  /** Any other failure (a version that exists already, input the coordinator refused, fsck found versions incomplete). */
  failure: 1,
  /** The command was called wrongly (unknown option, missing argument, bad value). */
  usage: 2,
  /** The token or password was refused, or the caller lacks the right (not an admin, image not in the policy). */
  auth: 3,
  /** The image, version, token or policy does not exist. */
  notFound: 4,
  /** The coordinator cannot be reached or is unavailable: trying again later may work. */
  unreachable: 5,
  /** Data failed verification: a signature, a hash, the pinned coordinator key, blocks no source had intact. */
  verification: 6,
  /** A local file or disk problem: missing or unreadable file, a directory where a file belongs, disk full. */
  localIo: 7,
  /** A data dir written by a newer trimswarm (EX_DATAERR of sysexits.h; the systemd units do not restart on it). */
  dataDirTooNew: 65,
  /** A bug: printed with its stack trace. */
  internal: 70,
  /** The data dir is in use by another agent or coordinator process: EX_TEMPFAIL of sysexits.h, "try again later". */
  locked: 75,
  /** coordinator fsck: a config that does not let it reach the chunks (EX_CONFIG of sysexits.h). */
  config: 78
} as const

/**
 * Exit code of a command refused because another process holds its data dir
 * (a second agent or coordinator on the same --data), so a supervisor or script
 * can tell it from a failure.
 */
export const EXIT_DATA_DIR_IN_USE = EXIT.locked

/** Exit code per error name (wire errors rebuilt by errorFromWire, and the agent's own). */
const EXIT_BY_NAME: Record<string, number> = {
  UsageError: EXIT.usage,
  UnauthorizedError: EXIT.auth,
  ForbiddenError: EXIT.auth,
  NotFoundError: EXIT.notFound,
  CoordinatorUnreachableError: EXIT.unreachable,
  UnavailableError: EXIT.unreachable,
  RateLimitedError: EXIT.unreachable,
  InvalidSignatureError: EXIT.verification,
  HashMismatchError: EXIT.verification,
  InvalidManifestError: EXIT.verification,
  InvalidCidError: EXIT.verification,
  KeyPinError: EXIT.verification,
  SyncIncompleteError: EXIT.verification,
  DowngradeRefusedError: EXIT.verification,
  ChunkUnavailableError: EXIT.verification,
  DiskFullError: EXIT.localIo,
  OutputRefusedError: EXIT.localIo,
  OutputReplacedError: EXIT.localIo,
  PartialFileError: EXIT.localIo,
  DataDirLockedError: EXIT.locked
}

/** Error codes of a network failure (Node and undici): the coordinator is unreachable, not a local problem. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN',
  'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** The exit code of an error: its own, or that of the first error in its cause chain with one; else 1. */
export function exitCodeOf (err: unknown): number {
  for (let e = err, depth = 0; e != null && depth < 10; e = (e as Error).cause, depth++) {
    if (e instanceof CliError && e.exitCode != null) return e.exitCode
    const byName = EXIT_BY_NAME[(e as Error).name]
    if (byName != null) return byName
    const code = (e as NodeJS.ErrnoException).code
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return EXIT.unreachable
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return EXIT.localIo // errno of a file operation (ABORT_ERR and ERR_* are not)
  }
  return EXIT.failure
}

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  static override name = 'UsageError'
  override name = 'UsageError'
}

/** A failure the user can act on (missing file, bad image): printed as is; exit code `exitCode`, else that of its cause, else 1. */
export class CliError extends Error {
  static override name = 'CliError'
  override name = 'CliError'
  readonly exitCode?: number
  constructor (message: string, options?: ErrorOptions & { exitCode?: number }) {
    super(message, options)
    this.exitCode = options?.exitCode
  }
}

/** Parsed options and positionals of one command line. */
export interface CommandArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>
  positionals: string[]
}

/** One CLI command (or a group of subcommands). */
export interface Command {
  summary: string
  /** Full help text shown by --help and on usage errors. */
  usage: string
  options?: ParseArgsOptionsConfig
  subcommands?: Record<string, () => Promise<Command>>
  run?: (args: CommandArgs) => Promise<number | undefined | void>
}

/** Runs a command with argv, handling --help, subcommands and errors; returns the exit code. */
export async function runCommand (cmd: Command, argv: string[], path: string): Promise<number> {
  try {
    if (cmd.subcommands != null) {
      const [sub, ...rest] = argv
      if (sub == null || sub === '--help' || sub === '-h' || sub === 'help') {
        process.stdout.write(cmd.usage + '\n')
        return sub == null ? 2 : 0
      }
      const load = cmd.subcommands[sub]
      if (load == null) throw new UsageError(`unknown command "${path} ${sub}"\n\n${cmd.usage}`)
      return await runCommand(await load(), rest, `${path} ${sub}`)
    }
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(cmd.usage + '\n')
      return 0
    }
    let parsed: CommandArgs
    try {
      parsed = parseArgs({ args: argv, options: cmd.options ?? {}, allowPositionals: true, strict: true }) as CommandArgs
    } catch (err) {
      throw new UsageError(`${(err as Error).message}\n\n${cmd.usage}`)
    }
    const code = await cmd.run!(parsed)
    return typeof code === 'number' ? code : 0
  } catch (err) {
    return reportError(err, path)
  }
}

/** Prints an error for people and returns its exit code. */
export function reportError (err: unknown, path: string): number {
  if (process.env.TRIMSWARM_DEBUG === '1') console.error(err)
  const e = err as NodeJS.ErrnoException
  if (err instanceof UsageError || err instanceof CliError || err instanceof TrimswarmError || EXIT_BY_NAME[e?.name] != null ||
    (typeof e?.code === 'string' && typeof e.message === 'string')) {
    // user mistakes, refusals, file system and network errors are the user's to act on: no stack trace
    console.error(`${path}: ${e.message}`)
    return exitCodeOf(err)
  }
  console.error(`${path}: unexpected error: ${(err as Error)?.stack ?? String(err)}`)
  return EXIT.internal
}

/**
 * --coordinator URL (repeatable where the command declares it so: the agent's failover list),
 * else TRIMSWARM_COORDINATOR (URLs separated by commas); each checked. A UsageError when none
 * is given or one is not an http:// or https:// URL.
 */
export function coordinatorUrlsOption (args: CommandArgs, usage: string): string[] {
  const v = args.values.coordinator as string | string[] | undefined
  const urls = v == null ? (process.env.TRIMSWARM_COORDINATOR ?? '').split(',').map(u => u.trim()).filter(u => u !== '') : typeof v === 'string' ? [v] : v
  if (urls.length === 0) throw new UsageError(`--coordinator URL (or TRIMSWARM_COORDINATOR) is required\n\n${usage}`)
  try {
    return parseCoordinatorUrls(urls)
  } catch (err) {
    if (err instanceof CoordinatorUrlError) throw new UsageError(`--coordinator: ${err.message}\n\n${usage}`)
    throw err
  }
}

/** The one --coordinator URL of a command that talks to one coordinator (the admin commands, publish), checked. */
export function coordinatorOption (args: CommandArgs, usage: string): string {
  const urls = coordinatorUrlsOption(args, usage)
  if (urls.length > 1) throw new UsageError(`one --coordinator URL here (an admin change goes to one coordinator), got ${urls.length}\n\n${usage}`)
  return urls[0]
}

/** --token-file, else TRIMSWARM_TOKEN_FILE; undefined when neither is set. */
export function tokenFileOption (args: CommandArgs): string | undefined {
  const v = (args.values['token-file'] as string | undefined) ?? process.env.TRIMSWARM_TOKEN_FILE
  return v == null || v === '' ? undefined : v
}

/** A required string option, or a UsageError naming it. */
export function requireString (args: CommandArgs, name: string, usage: string): string {
  const v = args.values[name]
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required\n\n${usage}`)
  return v
}

/** The single positional argument a command takes, or a UsageError. */
export function onePositional (args: CommandArgs, what: string, usage: string): string {
  if (args.positionals.length !== 1) throw new UsageError(`expected one ${what}, got ${args.positionals.length}\n\n${usage}`)
  return args.positionals[0]
}

/**
 * Resolves once everything written to stdout and stderr so far has been handed
 * to the OS, or their reader has gone. Writes to a pipe are asynchronous on
 * Linux: a process that exits right after writing more than the pipe holds
 * (64 KiB) would lose the rest.
 */
export async function flushStdio (): Promise<void> {
  await Promise.all([process.stdout, process.stderr].map(async (stream) => {
    if (stream.writableLength === 0 || stream.destroyed) return
    stream.on('error', () => {}) // a reader that left (EPIPE) is not this process's failure at exit
    await new Promise<void>(resolve => { stream.write('', () => { resolve() }) })
  }))
}

/** Rows as aligned columns (two spaces apart, no trailing blanks), one line each; the first row is the header. */
export function formatTable (rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd() + '\n').join('')
}
