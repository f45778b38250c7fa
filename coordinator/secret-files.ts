/**
 * Secrets the coordinator keeps in its data dir (admin token, session key,
 * signing key): created once with mode 0600 and never rewritten, so a backup
 * of DIR restores the same identity.
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, stat } from 'node:fs/promises'
import { ConfigError } from './errors.ts'
import { writeFileAtomic } from '../utils/atomic-write.ts'

/**
 * Returns the file's content, creating it with `make()` when absent. The file
 * appears whole or not at all, and only if absent (utils/atomic-write.ts,
 * exclusive): a full disk leaves no empty secret behind (an empty session key
 * would let anyone sign sessions), and two starts never race to different
 * secrets. An existing empty file is refused, not used.
 */
export async function loadOrCreateSecret (path: string, make: () => string | Uint8Array): Promise<{ value: Buffer, created: boolean }> {
  try {
    return { value: await readSecret(path), created: false }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const value = make()
  try {
    await writeFileAtomic(path, value, { mode: 0o600, exclusive: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { value: await readSecret(path), created: false }
    throw err
  }
  await chmod(path, 0o600) // the umask may have narrowed the mode further, never widened it; be exact
  return { value: Buffer.from(value), created: true }
}

/** An existing secret file's bytes (mode made 0600); ConfigError when it is empty. */
async function readSecret (path: string): Promise<Buffer> {
  const value = await readFile(path)
  await chmod(path, 0o600) // written by an older coordinator, or copied back from a backup with a wider mode
  if (value.length === 0) {
    throw new ConfigError(`${path} is empty (a write cut short, e.g. by a full disk); restore it from a backup, or delete it to make a new one`)
  }
  return value
}

/**
 * Creates the data dir (mode 0700) if missing, and makes an existing one 0700
 * (created by an older coordinator, or by hand). A folder other users may
 * write to (world-writable or sticky, such as /tmp) is refused, not changed:
 * they could plant files in it, and it is not the coordinator's to close.
 */
export async function ensureDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const mode = (await stat(dir)).mode
  if ((mode & 0o1002) !== 0) {
    throw new ConfigError(`data dir ${dir} is writable by other users (mode ${(mode & 0o7777).toString(8).padStart(4, '0')});` +
      ` give the coordinator a folder of its own (it makes it mode 0700)`)
  }
  await chmod(dir, 0o700)
}

/** A random token with a type prefix, e.g. `tsa_...` (admin), URL-safe. */
export function randomToken (prefix: string, bytes = 32): string {
  return `${prefix}${randomBytes(bytes).toString('base64url')}`
}
