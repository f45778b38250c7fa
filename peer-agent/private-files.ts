/**
 * The agent's data dir is private to the user the agent runs as: directories
 * 0700, files 0600. It holds the swarm key (the agent's peer identity), the
 * pinned coordinator key, checkpoints and manifests of what is installed, and
 * the event queue; another local user must neither read nor replace them.
 */
import { chmod, lstat, mkdir, opendir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { DATA_FILES, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './constants.ts'
import { DataDirUnsafeError } from './errors.ts'

/** Creates DIR (and missing parents) with mode 0700 if absent. */
export async function mkdirPrivate (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE })
}

/**
 * Creates the data dir if absent and makes it and the agent's files in it
 * private: a data dir written by an older agent (0755/0644), or files level
 * created with the umask's mode (level takes no mode), are tightened at every
 * start. Only the entries the agent writes (DATA_FILES) are changed, never
 * other files someone keeps in the same folder, and symbolic links are neither
 * followed nor changed. A folder other users may write to (such as /tmp) is
 * refused: they could plant files there, and it is not the agent's to close.
 */
export async function makeDataDirPrivate (dataDir: string): Promise<void> {
  await mkdirPrivate(dataDir)
  const mode = (await stat(dataDir)).mode
  if ((mode & 0o1002) !== 0) {
    throw new DataDirUnsafeError(`data dir ${dataDir} is writable by other users (mode ${(mode & 0o7777).toString(8).padStart(4, '0')});` +
      ` give the agent a folder of its own (it makes it mode 0700)`)
  }
  await chmod(dataDir, PRIVATE_DIR_MODE)
  for (const name of Object.values(DATA_FILES)) await tighten(join(dataDir, name))
}

/** Makes one entry private: a directory 0700 with everything below it, a file 0600; a symlink or missing entry is left. */
async function tighten (path: string): Promise<void> {
  let s
  try {
    s = await lstat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return // not written yet, or removed meanwhile
    throw err
  }
  if (s.isDirectory()) {
    if ((s.mode & 0o7777) !== PRIVATE_DIR_MODE) await chmod(path, PRIVATE_DIR_MODE)
    for await (const entry of await opendir(path)) await tighten(join(path, entry.name))
  } else if (s.isFile()) {
    if ((s.mode & 0o7777) !== PRIVATE_FILE_MODE) await chmod(path, PRIVATE_FILE_MODE)
  }
}
