/**
 * `trimswarm bench NAME [args]`: the same benchmarks as `npm run bench`
 * (bench/main.ts), one subcommand per bench/<name>.ts. Shaped as
 * bin/cli-support.ts's Command structurally, because bench/ does not import bin/.
 */
import { benchNames, loadBench } from './main.ts'

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>

/** Turns parsed options back into argv for the benchmark's own parser. */
function toArgv (values: Values, positionals: string[]): string[] {
  const argv: string[] = []
  for (const [k, v] of Object.entries(values)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one === true) argv.push(`--${k}`)
      else if (typeof one === 'string') argv.push(`--${k}`, one)
    }
  }
  return [...argv, ...positionals]
}

const subcommands = Object.fromEntries(benchNames().map(name => [name, async () => {
  const mod = await loadBench(name)
  if (mod == null) throw new Error(`no benchmark ${name}`)
  return {
    summary: mod.summary,
    usage: mod.usage,
    options: mod.options,
    run: async (args: { values: Values, positionals: string[] }) => {
      try {
        return await mod.run(toArgv(args.values, args.positionals))
      } catch (err) {
        // A benchmark's failure is reported like a user-facing error (TRIMSWARM_DEBUG=1 shows the stack).
        if (process.env.TRIMSWARM_DEBUG === '1') console.error(err)
        process.stderr.write(`trimswarm bench ${name}: ${(err as Error)?.message ?? String(err)}\n`)
        return 1
      }
    }
  }
}]))

/** The `trimswarm bench` command group. */
const command = {
  summary: 'run a benchmark',
  // Names only: loading every benchmark module just for this text is slow (`npm run bench -- --help` shows summaries).
  usage: `Usage: trimswarm bench NAME [args]   (same as npm run bench -- NAME [args])

Benchmarks: ${benchNames().join(', ')}
Run \`trimswarm bench NAME --help\` for one benchmark's options and what it measures.`,
  subcommands
}

export default command
