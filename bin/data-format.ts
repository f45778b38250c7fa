/**
 * Data dir formats: the coordinator's and the agent's data dirs record the
 * format they are in (DIR/data-format.json), so that a newer trimswarm opens
 * an older dir (migrating it first when its layout changed) and an older
 * trimswarm, after a downgrade, refuses a newer dir instead of misreading it.
 * A dir without the file is format 0: it was written before formats were
 * recorded (trimswarm 0.1.0 up to this change), with the same layout as 1.
 * Checked by the CLI before a command opens anything in the dir.
 */
import { mkdir, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DATA_FORMAT_FILE } from '../protocol/constants.ts'
import { TRIMSWARM_VERSION } from '../protocol/version.ts'
import { COORDINATOR_DATA_FORMAT } from '../coordinator/constants.ts'
import { AGENT_DATA_FORMAT, DATA_FILES } from '../peer-agent/constants.ts'
import { CliError, EXIT } from './cli-support.ts'
import { writeFileAtomic } from '../utils/atomic-write.ts'

/** Exit status when a data dir is newer than this trimswarm reads (EX_DATAERR; the systemd units do not restart on it). */
export const DATA_DIR_TOO_NEW_EXIT = EXIT.dataDirTooNew

/** A data dir written by a newer trimswarm: this one cannot read it. */
export class DataDirTooNewError extends CliError {
  static override name = 'DataDirTooNewError'
  override name = 'DataDirTooNewError'

  constructor (message: string, options?: ErrorOptions) {
    super(message, { ...options, exitCode: DATA_DIR_TOO_NEW_EXIT })
  }
}

/** One migration: brings a dir of format `from` to `from + 1`. */
export type Migration = (dir: string) => Promise<void>

/** What a data dir's owner reads: its current format and the migrations to it (index i: format i to i + 1). */
export interface DataFormat {
  /** "coordinator" or "agent", for messages. */
  kind: string
  current: number
  migrations: readonly Migration[]
  /** Entries the lock taken before the format check creates: a dir holding only these is new, not format 0. */
  lockEntries?: readonly string[]
}

/** What `openDataDir` found and did. */
export interface OpenedDataDir {
  /** The format the dir was in; undefined for a new (missing or empty) dir. */
  from: number | undefined
  to: number
}

async function readFormat (dir: string, kind: string): Promise<{ format: number, writtenBy?: string } | undefined> {
  let text: string
  try {
    text = await readFile(join(dir, DATA_FORMAT_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch {}
  const format = (parsed as { format?: unknown } | undefined)?.format
  if (typeof format !== 'number' || !Number.isSafeInteger(format) || format < 0) {
    throw new CliError(`${join(dir, DATA_FORMAT_FILE)} is damaged (expected {"format": N}): is ${dir} a trimswarm ${kind} data dir?`)
  }
  const writtenBy = (parsed as { writtenBy?: unknown }).writtenBy
  return { format, ...(typeof writtenBy === 'string' ? { writtenBy } : {}) }
}

/**
 * Makes `dir` ready for this trimswarm: a new dir is created (mode 0700) in the
 * current format; an older one is migrated step by step, the format file
 * written after each step (an interrupted migration resumes where it stopped);
 * a newer one throws DataDirTooNewError and is left untouched.
 */
export async function openDataDir (dir: string, spec: DataFormat): Promise<OpenedDataDir> {
  if (spec.migrations.length !== spec.current) {
    throw new Error(`${spec.kind} data format ${spec.current} needs ${spec.current} migrations, has ${spec.migrations.length}`)
  }
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err })
  const found = await readFormat(dir, spec.kind)
  const content = entries?.filter(e => !(spec.lockEntries ?? []).includes(e))
  const from = found?.format ?? (content == null || content.length === 0 ? undefined : 0)
  if (from != null && from > spec.current) {
    throw new DataDirTooNewError(`${dir} is a ${spec.kind} data dir of format ${from}${found?.writtenBy != null ? ` (written by ${found.writtenBy})` : ''}; ` +
      `this is trimswarm ${TRIMSWARM_VERSION}, which reads format ${spec.current} at most: install that version or newer again, ` +
      'or restore the copy of the dir taken before the upgrade (docs/OPERATIONS.md "Roll back")')
  }
  if (entries == null) await mkdir(dir, { recursive: true, mode: 0o700 })
  if (from == null) await writeFormat(dir, spec.current)
  for (let f = from ?? spec.current; f < spec.current; f++) {
    await spec.migrations[f](dir)
    await writeFormat(dir, f + 1)
  }
  return { from, to: spec.current }
}

async function writeFormat (dir: string, format: number): Promise<void> {
  // 0600 like every other file of both data dirs
  const file = join(dir, DATA_FORMAT_FILE)
  try {
    await writeFileAtomic(file, JSON.stringify({ format, writtenBy: `trimswarm ${TRIMSWARM_VERSION}` }) + '\n', { mode: 0o600 })
  } catch (err) {
    throw new CliError(`cannot write ${file}: ${(err as Error).message}`, { cause: err })
  }
}

/** Format 0 (no format file) has the layout of format 1: the step only records the format. */
const recordOnly: Migration = async () => {}

/** The coordinator's data dir (coordinator --data). */
export const COORDINATOR_DATA: DataFormat = { kind: 'coordinator', current: COORDINATOR_DATA_FORMAT, migrations: [recordOnly] }

/** The agent's data dir (agent sync/index --data, agent run's "dataDir"). */
export const AGENT_DATA: DataFormat = { kind: 'agent', current: AGENT_DATA_FORMAT,
  migrations: [recordOnly], lockEntries: [DATA_FILES.lockDb, DATA_FILES.lockHolder] }

/** openDataDir, telling the user when it migrated the dir (console.warn: a JSON line when the command logs JSON). */
export async function openDataDirReporting (dir: string, spec: DataFormat): Promise<void> {
  const { from, to } = await openDataDir(dir, spec)
  if (from != null && from < to) console.warn(`${spec.kind} data dir ${dir}: upgraded from format ${from} to ${to}`)
}
