/**
 * Node's compile cache for every trimswarm command (bin/trimswarm.js turns it on before loading the
 * CLI): V8's compiled code and Node's stripped TypeScript, keyed by source hash, so later runs start
 * about a third faster (docs/BENCHMARKS.md `### startup`). It lives in the user's own cache dir
 * ($XDG_CACHE_HOME or ~/.cache, mode 0700), not the shared temp dir, where another local user could
 * plant entries that a root agent would load (docs/SECURITY.md). NODE_COMPILE_CACHE=DIR chooses
 * another; NODE_DISABLE_COMPILE_CACHE=1 turns it off. One copy of the rule: the branch benchmark's
 * warm-up of a new build (bench/branch/built-cli.ts) fills the same cache through it.
 */
import { mkdirSync } from 'node:fs'
import * as nodeModule from 'node:module'
import { homedir } from 'node:os'
import { join } from 'node:path'

/** The cache dir for environment `env`: $XDG_CACHE_HOME/trimswarm/compile-cache, or ~/.cache/trimswarm/compile-cache. */
export function compileCacheDir (env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'trimswarm', 'compile-cache')
}

/** Makes the dir (mode 0700) and turns the cache on; with no writable place for it, runs without it. */
export function enableTrimswarmCompileCache (): void {
  try {
    const dir = compileCacheDir()
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    // Node 22.0 has no enableCompileCache (22.1 has)
    nodeModule.enableCompileCache?.(dir)
  } catch {} // no writable home: run without the cache
}
