/** The agent's data dir lock: one agent process per data dir, a lock left by a dead process taken over. */
import { mkdir, open, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { DataDirLockedError } from './errors.ts'

/** Takes the data dir lock (one agent process per data dir); returns the release function. */
export async function lockDataDir (dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true })
  const path = join(dataDir, 'lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx')
      await fh.writeFile(String(process.pid))
      await fh.close()
      return async () => { await rm(path, { force: true }) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim())
      let alive = false
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid) {
        try { process.kill(pid, 0); alive = true } catch (e) { alive = (e as NodeJS.ErrnoException).code === 'EPERM' }
      }
      if (alive) throw new DataDirLockedError(`data dir ${dataDir} is in use by agent process ${pid}`)
      await rm(path, { force: true }) // left by a process that died (kill -9)
    }
  }
  throw new DataDirLockedError(`cannot lock data dir ${dataDir}`)
}
