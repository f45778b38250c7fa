/**
 * Totals of the reliability suite's count files
 * (test-artifacts/reliability/*.json, written by test/reliability/counts.ts
 * and bench/fuzz.ts): one line per file and the sums.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** Where the count files are. */
export const RELIABILITY_COUNTS_DIR = join(import.meta.dirname, '..', '..', 'test-artifacts', 'reliability')

/** Sums over every count file. */
export interface ReliabilityTotals {
  files: number
  trials: number
  cases: number
  faultsInjected: number
  bytesLost: number
  lines: string[]
}

/** Reads every count file and sums trials, cases, faults injected and bytes lost. */
export function reliabilityTotals (dir = RELIABILITY_COUNTS_DIR): ReliabilityTotals {
  let names: string[] = []
  try { names = readdirSync(dir).filter(n => n.endsWith('.json')).sort() } catch {}
  const t: ReliabilityTotals = { files: 0, trials: 0, cases: 0, faultsInjected: 0, bytesLost: 0, lines: [] }
  for (const n of names) {
    const c = JSON.parse(readFileSync(join(dir, n), 'utf8'))
    t.files++
    t.trials += c.trials ?? 0
    t.cases += c.cases ?? 0
    t.faultsInjected += c.faultsInjected ?? 0
    t.bytesLost += c.bytesLost ?? 0
    t.lines.push(`${n.slice(0, -5).padEnd(22)} trials ${String(c.trials ?? 0).padStart(4)}  cases ${String(c.cases ?? 0).padStart(9)}  faults ${String(c.faultsInjected ?? 0).padStart(9)}  bytes lost ${c.bytesLost}  (${c.recordedAt ?? '?'})`)
  }
  t.lines.push(`${'TOTAL'.padEnd(22)} trials ${String(t.trials).padStart(4)}  cases ${String(t.cases).padStart(9)}  faults ${String(t.faultsInjected).padStart(9)}  bytes lost ${t.bytesLost}  (${t.files} files)`)
  return t
}
