/**
 * The agent's data dir lock: one agent process per data dir.
 *
 * The kernel holds the lock: an fcntl write lock on DATA/lock.db/LOCK, taken by
 * opening that (empty) level database, the same mechanism that guards the
 * coordinator's data dir. The kernel drops it when the holder's files are
 * closed, which happens however the process ends (exit, kill -9, crash), before
 * it is a zombie, and a power cut leaves no lock behind at all. So a stale lock
 * never blocks, whatever process now has the old PID. Node has no flock/fcntl
 * of its own, and level is already a dependency of the agent (host index): no
 * native module to build (docs/ARCHITECTURE.md "Data dir locks").
 *
 * DATA/lock holds the holder's PID for the refusal message only; it is never
 * what decides.
 */
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { DATA_FILES, PRIVATE_FILE_MODE } from './constants.ts'
import { DataDirLockedError } from './errors.ts'
import { makeDataDirPrivate } from './private-files.ts'

/**
 * Takes the data dir lock, or throws DataDirLockedError at once when another
 * agent process holds it; creates the data dir and makes it private (0700/0600).
 * Returns the release function.
 */
export async function lockDataDir (dataDir: string): Promise<() => Promise<void>> {
  await makeDataDirPrivate(dataDir)
  const db = new Level(join(dataDir, DATA_FILES.lockDb))
  try {
    await db.open()
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'LEVEL_LOCKED') {
      throw new DataDirLockedError(`data dir ${dataDir} is in use by ${await holderName(dataDir)}; stop it first, or give this agent a data dir of its own`, { cause: err })
    }
    throw err
  }
  const holderPath = join(dataDir, DATA_FILES.lockHolder)
  try {
    await writeFile(holderPath, `${process.pid}\n`, { mode: PRIVATE_FILE_MODE })
  } catch (err) {
    await db.close()
    throw err
  }
  return async () => {
    try {
      await rm(holderPath, { force: true })
      await makeDataDirPrivate(dataDir) // what level created meanwhile (host index tables) with the umask's mode
    } finally {
      await db.close()
    }
  }
}

/** "agent process PID" from DATA/lock when it names a live process, else "another agent process". */
async function holderName (dataDir: string): Promise<string> {
  const pid = Number((await readFile(join(dataDir, DATA_FILES.lockHolder), 'utf8').catch(() => '')).trim())
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return 'another agent process'
  try {
    process.kill(pid, 0)
  } catch (err) {
    // the file may be left by a holder that died and not yet rewritten by the live one
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return 'another agent process'
  }
  return `agent process ${pid}`
}
