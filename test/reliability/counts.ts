/**
 * Each reliability test file records what it exercised (trials, cases, faults
 * injected, bytes lost) in test-artifacts/reliability/<name>.json; the
 * summary test (summary.test.ts) and `npm run bench` print the totals.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** Where the count files go. */
export const COUNTS_DIR = join(import.meta.dirname, '..', '..', 'test-artifacts', 'reliability')

/** What one reliability file exercised. */
export interface ReliabilityCounts {
  /** The promise the file guards, in one line. */
  promise: string
  trials?: number
  cases?: number
  faultsInjected?: number
  /** Bad bytes served, written or kept; every test asserts this is 0. */
  bytesLost: number
  [extra: string]: unknown
}

/** Writes one file's counts (overwrites the previous run's). */
export async function recordCounts (name: string, counts: ReliabilityCounts): Promise<void> {
  await mkdir(COUNTS_DIR, { recursive: true })
  await writeFile(join(COUNTS_DIR, `${name}.json`), JSON.stringify({ ...counts, recordedAt: new Date().toISOString() }, null, 2) + '\n')
}

/** Every recorded count file, by name. */
export async function readAllCounts (): Promise<Map<string, ReliabilityCounts>> {
  const out = new Map<string, ReliabilityCounts>()
  let names: string[] = []
  try {
    names = (await readdir(COUNTS_DIR)).filter(n => n.endsWith('.json')).sort()
  } catch {}
  for (const n of names) out.set(n.slice(0, -5), JSON.parse(await readFile(join(COUNTS_DIR, n), 'utf8')))
  return out
}
