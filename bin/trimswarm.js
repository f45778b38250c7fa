#!/usr/bin/env node
// Entry point of the `trimswarm` CLI. In a source checkout it runs the TypeScript sources by Node's built-in type
// stripping (Node >= 22.18; npm scripts and npx use the Node 24 pinned in devDependencies, so the check below only
// fires when run by hand). An install (npm package, .deb) carries no sources, only the JavaScript `npm run build`
// writes to dist/ (Node >= 22): Node refuses to strip types under node_modules.
const { existsSync } = await import('node:fs')
const fromSource = existsSync(new URL('./main.ts', import.meta.url))
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (fromSource && major === 22 && minor < 18)) {
  console.error(fromSource
    ? `trimswarm needs Node >= 22.18 (this is ${process.version}); run it as \`npx trimswarm\` to use the project's Node 24`
    : `trimswarm needs Node >= 22 (this is ${process.version})`)
  process.exit(1)
}
// V8's compiled code and Node's stripped TypeScript are cached, keyed by source hash: about a third less
// start-up for every later run (docs/BENCHMARKS.md `### startup`). The cache is the user's own
// ($XDG_CACHE_HOME or ~/.cache, mode 0700), not the shared temp dir, where another local user could plant
// entries that a root agent would load. NODE_COMPILE_CACHE=DIR chooses another; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
{
  const { enableCompileCache } = await import('node:module')
  const { mkdirSync } = await import('node:fs')
  const { homedir } = await import('node:os')
  const { join } = await import('node:path')
  try {
    const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'trimswarm', 'compile-cache')
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    enableCompileCache?.(dir)
  } catch {} // no writable home: run without the cache
}
await import(fromSource ? './main.ts' : '../dist/bin/main.js')
