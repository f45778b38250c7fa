/**
 * The agent's data dir lock: one agent process per data dir, held by the
 * kernel on DATA/lock.db/LOCK (utils/data-dir-lock.ts says how and why).
 * DATA/lock holds the holder's PID for the refusal message only.
 */
import { lockDataDir as lockDir } from '../utils/data-dir-lock.ts'
import { DATA_FILES, PRIVATE_FILE_MODE } from './constants.ts'
import { makeDataDirPrivate } from './private-files.ts'

/**
 * Takes the data dir lock, or throws DataDirLockedError at once when another
 * agent process holds it; creates the data dir and makes it private (0700/0600).
 * Returns the release function.
 */
export async function lockDataDir (dataDir: string): Promise<() => Promise<void>> {
  await makeDataDirPrivate(dataDir)
  const lock = await lockDir(dataDir, {
    lockDb: DATA_FILES.lockDb,
    holderFile: DATA_FILES.lockHolder,
    holder: 'agent process',
    advice: 'stop it first, or give this agent a data dir of its own',
    fileMode: PRIVATE_FILE_MODE
  })
  return async () => {
    try {
      await lock.release()
    } finally {
      await makeDataDirPrivate(dataDir) // what level created meanwhile (host index tables) with the umask's mode
    }
  }
}
