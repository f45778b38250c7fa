/**
 * What every CLI command shares: option parsing with --help, and one way of
 * turning errors into a message and an exit code (no stack traces for user
 * mistakes; TRIMSWARM_DEBUG=1 shows them).
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { TrimswarmError } from '../protocol/errors.ts'

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  static override name = 'UsageError'
  override name = 'UsageError'
}

/**
 * Exit code of a command refused because another process holds its data dir
 * (a second agent or coordinator on the same --data): 75, EX_TEMPFAIL of
 * sysexits.h, "try again later", so a supervisor or script can tell it from a failure.
 */
export const EXIT_DATA_DIR_IN_USE = 75

/** A failure the user can act on (missing file, bad image): printed as is, exit code 1 unless `exitCode` says otherwise. */
export class CliError extends Error {
  static override name = 'CliError'
  override name = 'CliError'
  readonly exitCode: number

  constructor (message: string, options?: ErrorOptions & { exitCode?: number }) {
    super(message, options)
    this.exitCode = options?.exitCode ?? 1
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
  if (err instanceof UsageError) {
    console.error(`${path}: ${err.message}`)
    return 2
  }
  if (err instanceof CliError) {
    console.error(`${path}: ${err.message}`)
    return err.exitCode
  }
  if (err instanceof TrimswarmError) {
    console.error(`${path}: ${err.message}`)
    return 1
  }
  const e = err as NodeJS.ErrnoException
  if (typeof e?.code === 'string' && typeof e.message === 'string') {
    // file system and network errors are the user's to fix: no stack trace
    console.error(`${path}: ${e.message}`)
    return 1
  }
  console.error(`${path}: unexpected error: ${(err as Error)?.stack ?? String(err)}`)
  return 70
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
