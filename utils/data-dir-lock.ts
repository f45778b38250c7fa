/**
 * One process per data dir, with the lock held by the kernel.
 *
 * The lock is an fcntl write lock on DATA/<lockDb>/LOCK, taken by opening that
 * (empty) level database. The kernel drops it when the holder's files are
 * closed, which happens however the process ends (exit, kill -9, crash), before
 * it is a zombie, and a power cut leaves no lock behind at all. So a stale lock
 * never blocks, whatever process now has the old PID. Node has no flock/fcntl
 * of its own, and level is already a dependency of both sides: no native
 * module to build (docs/ARCHITECTURE.md "Data dir locks").
 *
 * An optional holder file records the holder's PID for the refusal message
 * only; it is never what decides.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { DataDirLockedError } from './errors.ts'

/** What lockDataDir needs to know about the data dir's layout and its holders. */
export interface DataDirLockInit {
  /** The level database (relative to the data dir) whose LOCK file is the lock. */
  lockDb: string
  /** A file (relative to the data dir) where the holder writes its PID, for the refusal message. */
  holderFile?: string
  /** What kind of process holds it, for messages: "agent process" gives "agent process 1234" or "another agent process". */
  holder: string
  /** Appended to the refusal message after "; " (what the user should do). */
  advice?: string
  /** Mode of the holder file (the umask applies); default 0o600. */
  fileMode?: number
}

/** A held data dir lock. */
export interface DataDirLock {
  /** Removes the holder file and drops the lock; call once. */
  release: () => Promise<void>
}

/** Whether an error of opening a level database means another process (or this one) holds its lock. */
export function isLevelLockedError (err: unknown): boolean {
  return (err as { cause?: { code?: string } })?.cause?.code === 'LEVEL_LOCKED' || (err as { code?: string })?.code === 'LEVEL_LOCKED'
}

/**
 * Takes the lock of `dataDir` (creating the folder, mode 0700, if absent), or
 * throws DataDirLockedError at once when another process holds it.
 */
export async function lockDataDir (dataDir: string, init: DataDirLockInit): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const db = new Level(join(dataDir, init.lockDb))
  try {
    await db.open()
  } catch (err) {
    if (!isLevelLockedError(err)) throw err
    const who = await holderName(dataDir, init)
    throw new DataDirLockedError(`data dir ${dataDir} is in use by ${who}${init.advice != null ? `; ${init.advice}` : ''}`, { cause: err })
  }
  const holderPath = init.holderFile != null ? join(dataDir, init.holderFile) : undefined
  if (holderPath != null) {
    try {
      await writeFile(holderPath, `${process.pid}\n`, { mode: init.fileMode ?? 0o600 })
    } catch (err) {
      await db.close()
      throw err
    }
  }
  return {
    async release () {
      try {
        if (holderPath != null) await rm(holderPath, { force: true })
      } finally {
        await db.close()
      }
    }
  }
}

/** "<holder> PID" when the holder file names a live process, else "another <holder>". */
async function holderName (dataDir: string, init: DataDirLockInit): Promise<string> {
  const other = `another ${init.holder}`
  if (init.holderFile == null) return other
  const pid = Number((await readFile(join(dataDir, init.holderFile), 'utf8').catch(() => '')).trim())
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return other
  try {
    process.kill(pid, 0)
  } catch (err) {
    // the file may be left by a holder that died and not yet rewritten by the live one
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return other
  }
  return `${init.holder} ${pid}`
}
