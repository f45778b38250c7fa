/**
 * The trimswarm CLI the branch benchmark runs by default: the one users install, built by
 * scripts/build.sh (a bundle), not the checkout's TypeScript sources.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

/**
 * Builds the CLI as it ships (scripts/build.sh: the bundle), laid out like the .deb's
 * /usr/lib/trimswarm (bin/trimswarm.js, dist/, package.json, node_modules), in
 * .cache/bench-cli/HASH named by its contents, and runs that. A build seen before keeps its path,
 * so Node's compile cache (keyed by path and source) serves it as it serves an installed
 * package; a new one is loaded once first (warmCompileCache).
 */
export function builtCli (repo: string): string {
  const parent = join(repo, '.cache', 'bench-cli')
  mkdirSync(parent, { recursive: true })
  const tmp = mkdtempSync(join(parent, 'build-'))
  execFileSync(join(repo, 'scripts', 'build.sh'), [join(tmp, 'dist')], { stdio: ['ignore', 'ignore', 'inherit'] })
  mkdirSync(join(tmp, 'bin'))
  copyFileSync(join(repo, 'bin', 'trimswarm.js'), join(tmp, 'bin', 'trimswarm.js'))
  copyFileSync(join(repo, 'package.json'), join(tmp, 'package.json'))
  const hash = createHash('sha256')
  for (const f of (readdirSync(tmp, { recursive: true }) as string[]).sort()) {
    if (statSync(join(tmp, f)).isFile()) hash.update(f).update(readFileSync(join(tmp, f)))
  }
  const root = join(parent, hash.digest('hex').slice(0, 16))
  if (existsSync(root)) {
    rmSync(tmp, { recursive: true, force: true })
    utimesSync(root, new Date(), new Date())
  } else {
    symlinkSync(join(repo, 'node_modules'), join(tmp, 'node_modules'))
    renameSync(tmp, root)
    warmCompileCache(root)
  }
  pruneBuilds(parent, root)
  return join(root, 'bin', 'trimswarm.js')
}

/** Builds kept in .cache/bench-cli: the one in use and the most recently used others (a before/after pair, one more). */
const KEPT_BUILDS = 3

/** Removes the builds of `parent` past the KEPT_BUILDS most recently used (`current` always stays). */
export function pruneBuilds (parent: string, current: string): void {
  const builds = readdirSync(parent).map(name => join(parent, name)).filter(p => p !== current && /\/[0-9a-f]{16}$/.test(p))
  builds.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
  for (const old of builds.slice(KEPT_BUILDS - 1)) rmSync(old, { recursive: true, force: true })
}

/** Loads every module of a new build once, as bin/trimswarm.js does, so its first measured run is not its first load. */
function warmCompileCache (root: string): void {
  execFileSync(process.execPath, [join(root, 'bin', 'trimswarm.js'), '--version'], { stdio: 'ignore' })
  const chunks = readdirSync(join(root, 'dist', 'bin')).filter(f => f.endsWith('.js') && f !== 'main.js' && f !== 'compile-cache.js').map(f => pathToFileURL(join(root, 'dist', 'bin', f)).href)
  const cacheModule = pathToFileURL(join(root, 'dist', 'bin', 'compile-cache.js')).href
  const code = `const { enableTrimswarmCompileCache } = await import(${JSON.stringify(cacheModule)})
enableTrimswarmCompileCache()
for (const f of ${JSON.stringify(chunks)}) { try { await import(f) } catch {} }
process.exit(0)`
  // best effort: a module that fails to load here fails in the measured run, with its error
  try { execFileSync(process.execPath, ['--input-type=module', '-e', code], { stdio: 'ignore', timeout: 60_000 }) } catch {}
}
