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
// Node's compile cache, in the user's own cache dir (bin/compile-cache.ts): about a third less start-up for every later run.
const { enableTrimswarmCompileCache } = await import(fromSource ? './compile-cache.ts' : '../dist/bin/compile-cache.js')
enableTrimswarmCompileCache()
await import(fromSource ? './main.ts' : '../dist/bin/main.js')
