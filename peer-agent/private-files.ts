/**
 * The agent's data dir is private to the user the agent runs as: directories
 * 0700, files 0600. It holds the swarm key (the agent's peer identity), the
 * pinned coordinator key, checkpoints and manifests of what is installed, and
 * the event queue; another local user must neither read nor replace them.
 */
import { chmod, lstat, mkdir, opendir } from 'node:fs/promises'
import { join } from 'node:path'
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './constants.ts'

/** Creates DIR (and missing parents) with mode 0700 if absent. */
export async function mkdirPrivate (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE })
}

/**
 * Creates the data dir if absent and makes it and everything under it private:
 * a data dir written by an older agent (0755/0644), or files level created with
 * the umask's mode (level takes no mode), are tightened at every start.
 * Symbolic links are neither followed nor changed.
 */
export async function makeDataDirPrivate (dataDir: string): Promise<void> {
  await mkdirPrivate(dataDir)
  await chmod(dataDir, PRIVATE_DIR_MODE)
  await tightenTree(dataDir)
}

async function tightenTree (dir: string): Promise<void> {
  for await (const entry of await opendir(dir)) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      await chmodIfNeeded(path, PRIVATE_DIR_MODE)
      await tightenTree(path)
    } else if (entry.isFile()) {
      await chmodIfNeeded(path, PRIVATE_FILE_MODE)
    }
  }
}

/** chmod only when the mode differs (no metadata write for the usual, already private, file). */
async function chmodIfNeeded (path: string, mode: number): Promise<void> {
  try {
    const s = await lstat(path)
    if ((s.mode & 0o7777) !== mode && !s.isSymbolicLink()) await chmod(path, mode)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err // removed meanwhile: nothing to tighten
  }
}
