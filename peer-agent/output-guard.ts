/**
 * What a sync may write to: checked before anything is downloaded. The output path is
 * replaced by a rename at the end of a sync, so a path naming a user's own file would
 * lose that file, and a directory would fail only after the whole download.
 */
import { lstat, readdir, readFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { DATA_FILES } from './constants.ts'
import { OutputRefusedError } from './errors.ts'

/** The temp ("partial") file a sync to `out` writes beside it, renamed over `out` once the whole image verifies. */
export function partialPathOf (out: string): string {
  return join(dirname(out), `.${basename(out)}.trimswarm-partial`)
}

/** Output paths of the versions this data dir installed (every image's installed record). */
export async function installedOutputs (dataDir: string): Promise<Set<string>> {
  const outs = new Set<string>()
  const manifests = join(dataDir, DATA_FILES.manifests)
  const images = await readdir(manifests).catch(() => [] as string[])
  for (const image of images) {
    try {
      const state = JSON.parse(await readFile(join(manifests, image, DATA_FILES.installed), 'utf8')) as { out?: unknown }
      if (typeof state.out === 'string') outs.add(state.out)
    } catch {}
  }
  return outs
}

/**
 * Refuses an output the sync must not replace: a directory (always), or an existing file
 * (or link, device, ...) that this data dir did not install, unless `force`.
 */
export async function checkOutput (dataDir: string, out: string, options: { force?: boolean } = {}): Promise<void> {
  const path = resolve(out)
  let st
  try {
    st = await lstat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw new OutputRefusedError(`cannot check the output ${path}: ${(err as Error).message}`, { cause: err })
  }
  if (st.isDirectory()) throw new OutputRefusedError(`the output ${path} is a directory; name the image file to write, e.g. ${join(path, 'IMAGE.img')}`)
  if (options.force === true) return
  if ((await installedOutputs(dataDir)).has(path)) return
  throw new OutputRefusedError(`the output ${path} exists and was not installed by this agent (data dir ${resolve(dataDir)});` +
    ` refusing to replace it: choose another path, or give --force to replace it`)
}
