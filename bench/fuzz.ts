/**
 * `npm run bench -- fuzz [--cases N]`: fast-check fuzz of every decoder in
 * protocol/ (bench/lib/decoder-fuzz.ts, the same table the reliability test
 * runs with small counts), N cases per decoder (default FUZZ_DEFAULT_CASES).
 * Prints per-decoder counts and the totals; exits 1 if any decoder threw an
 * error it does not document (each decoder stops at its first one). Counts also go to
 * test-artifacts/reliability/decoder-fuzz-bench.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fuzzOne, fuzzTargets, type FuzzResult } from './lib/decoder-fuzz.ts'

/** Cases per decoder when --cases is not given (the issue asks for at least this many). */
export const FUZZ_DEFAULT_CASES = 100_000

/** One line for the list of benchmarks. */
export const summary = 'fast-check fuzz of every protocol decoder (>= 100,000 cases each): decode or the documented error'

/** Help text. */
export const usage = `Usage: npm run bench -- fuzz [--cases N] [--seed N] [--only SUBSTRING]

Feeds every decoder of protocol/ (manifest, signed envelope, delta-pack header,
capability, block-exchange message, CID text, rate text, block batch ranges,
every API schema) N inputs each (default ${FUZZ_DEFAULT_CASES}): random bytes or values and
mutations of valid encodings. Each input must decode or throw the decoder's
documented error class. Prints counts per decoder and the totals; a decoder
stops at its first undocumented error (printed with the counterexample), the
others still run; exit 1 if any failed.`

/** Its options. */
export const options = {
  cases: { type: 'string' },
  seed: { type: 'string' },
  only: { type: 'string' }
} as const

/** Runs the fuzz. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const cases = Number(values.cases ?? FUZZ_DEFAULT_CASES)
  const seed = Number(values.seed ?? Date.now() % 2 ** 31)
  if (!Number.isSafeInteger(cases) || cases < 1) throw new Error('--cases must be a whole number >= 1')
  const targets = fuzzTargets().filter(t => values.only == null || t.name.includes(values.only))
  process.stdout.write(`fuzz: ${targets.length} decoders x ${cases} cases, seed ${seed}\n`)
  const results: FuzzResult[] = []
  const started = performance.now()
  for (const t of targets) {
    const t0 = performance.now()
    const r = fuzzOne(t, cases, seed)
    results.push(r)
    process.stdout.write(`${t.name.padEnd(40)} ${String(r.cases).padStart(8)} cases  ${String(r.decoded).padStart(8)} decoded  ${String(r.rejected).padStart(8)} rejected  ${((performance.now() - t0) / 1000).toFixed(1)} s\n`)
    if (r.failure != null) {
      process.stdout.write(`  UNDOCUMENTED ERROR: ${r.failure}\n`)
    }
  }
  const total = results.reduce((s, r) => s + r.cases, 0)
  const failed = results.filter(r => r.failure != null).length
  process.stdout.write(`total: ${results.length} decoders, ${total} cases, ${results.reduce((s, r) => s + r.rejected, 0)} rejected with the documented error, ${failed} undocumented errors, ${((performance.now() - started) / 1000).toFixed(0)} s\n`)
  const dir = join(import.meta.dirname, '..', 'test-artifacts', 'reliability')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'decoder-fuzz-bench.json'), JSON.stringify({
    promise: 'every protocol decoder decodes or throws its documented error class (bench run)',
    decoders: results.length, cases: total, seed, bytesLost: 0, undocumentedErrors: failed,
    perDecoder: Object.fromEntries(results.map(r => [r.name, { cases: r.cases, decoded: r.decoded, rejected: r.rejected }])),
    recordedAt: new Date().toISOString()
  }, null, 2) + '\n')
  return failed > 0 ? 1 : 0
}
