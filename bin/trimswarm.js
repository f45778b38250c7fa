#!/usr/bin/env node
// Entry point of the `trimswarm` CLI. The sources are TypeScript run by Node's
// built-in type stripping (Node >= 22.18); npm scripts and npx use the Node 24
// pinned in devDependencies, so the check below only fires when run by hand.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`trimswarm needs Node >= 22.18 (this is ${process.version}); run it as \`npx trimswarm\` to use the project's Node 24`)
  process.exit(1)
}
// V8's compile cache (and Node's cache of stripped TypeScript) in the OS temp dir, keyed by source hash: about
// a third less start-up for every later run (docs/BENCHMARKS.md "start-up"); NODE_DISABLE_COMPILE_CACHE=1 turns it off
const { enableCompileCache } = await import('node:module')
enableCompileCache?.()
await import('./main.ts')
