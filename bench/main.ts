/**
 * `npm run bench -- NAME [args]`: runs bench/NAME.ts, a module exporting
 * `run(argv)` (and `summary`). Benchmarks are found by file name, so adding
 * one is adding a file. Not a `trimswarm` command: the shipped CLI carries no
 * benchmarks (they need a checkout, its corpus and devDependencies).
 */
import { readdirSync } from 'node:fs'
import type { ParseArgsOptionsConfig } from 'node:util'

/** What a benchmark module exports. */
export interface BenchModule {
  /** One line for the list of benchmarks. */
  summary: string
  /** Full help text. */
  usage: string
  /** Its options (node:util parseArgs config). */
  options: ParseArgsOptionsConfig
  /** Runs the benchmark with its own arguments; resolves to an exit code. */
  run: (argv: string[]) => Promise<number | undefined | void>
}

const NOT_BENCHMARKS = new Set(['main', 'cli'])

/** Names of the benchmarks (bench/<name>.ts files), sorted. */
export function benchNames (): string[] {
  return readdirSync(import.meta.dirname)
    .filter(f => f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.includes('.test.'))
    .map(f => f.slice(0, -3))
    .filter(n => !NOT_BENCHMARKS.has(n) && /^[a-z][a-z0-9-]*$/.test(n))
    .sort()
}

/** Loads one benchmark module by name; undefined when there is no such benchmark. */
export async function loadBench (name: string): Promise<BenchModule | undefined> {
  if (!benchNames().includes(name)) return undefined
  const mod = await import(`./${name}.ts`) as Partial<BenchModule>
  if (typeof mod.run !== 'function') throw new Error(`bench/${name}.ts does not export run(argv)`)
  return { summary: mod.summary ?? name, usage: mod.usage ?? `npm run bench -- ${name}`, options: mod.options ?? {}, run: mod.run }
}

/** Usage text listing every benchmark. */
export async function benchUsage (): Promise<string> {
  const lines = ['Usage: npm run bench -- NAME [args]   (NAME --help for its options)', '', 'Benchmarks:']
  for (const name of benchNames()) {
    let summary: string
    try {
      summary = (await loadBench(name))?.summary ?? ''
    } catch (err) {
      summary = `(does not load: ${(err as Error).message})`
    }
    lines.push(`  ${name.padEnd(12)} ${summary}`)
  }
  return lines.join('\n')
}

/** Runs `NAME [args]`; prints a clear error listing the names when NAME is unknown. Returns the exit code. */
export async function runBench (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name == null || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await benchUsage() + '\n')
    return name == null ? 2 : 0
  }
  const mod = await loadBench(name)
  if (mod == null) {
    process.stderr.write(`bench: unknown benchmark "${name}"; known: ${benchNames().join(', ')}\n`)
    return 2
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(mod.usage + '\n')
    return 0
  }
  try {
    const code = await mod.run(rest)
    return typeof code === 'number' ? code : 0
  } catch (err) {
    if (process.env.TRIMSWARM_DEBUG === '1') console.error(err)
    const usageMistake = String((err as NodeJS.ErrnoException)?.code).startsWith('ERR_PARSE_ARGS')
    process.stderr.write(`bench ${name}: ${(err as Error)?.message ?? String(err)}\n${usageMistake ? `\n${mod.usage}\n` : ''}`)
    return usageMistake ? 2 : 1
  }
}

if (import.meta.main) {
  process.exitCode = await runBench(process.argv.slice(2))
}
