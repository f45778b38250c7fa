/**
 * Where the benchmarks find the corpus (base.img v1, next.img v2): the folder
 * given, else the first of CORPUS_DIRS holding both images, else a new one
 * built by scripts/make-corpus.sh into .cache/corpus (root, about 2 minutes).
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'

const REPO = resolve(import.meta.dirname, '..', '..')

/** Folders looked in, in order, when none is given. */
export const CORPUS_DIRS = [join(REPO, '.cache', 'corpus'), '/work/corpus', resolve(REPO, '..', 'shared', 'corpus')]

/** Whether `dir` holds both corpus images. */
export function isCorpus (dir: string): boolean {
  return existsSync(join(dir, 'base.img')) && existsSync(join(dir, 'next.img'))
}

/** The corpus folder: `dir` if given (it must hold both images), else a found or newly built one. */
export function findCorpus (dir?: string): string {
  if (dir != null) {
    if (!isCorpus(dir)) throw new Error(`no base.img and next.img in ${dir}`)
    return resolve(dir)
  }
  const found = CORPUS_DIRS.find(isCorpus)
  if (found != null) return found
  process.stderr.write('no corpus found: building it with scripts/make-corpus.sh into .cache/corpus (about 2 minutes)\n')
  try {
    execFileSync(join(REPO, 'scripts', 'make-corpus.sh'), [join(REPO, '.cache', 'corpus')], { stdio: ['ignore', 'ignore', 'inherit'] })
  } catch {
    throw new Error(`no corpus in ${CORPUS_DIRS.join(' or ')}, and scripts/make-corpus.sh could not build one (see above): pass a folder holding base.img and next.img`)
  }
  return join(REPO, '.cache', 'corpus')
}
