/**
 * Writes package.json's "version" into protocol/version.ts, the one place the
 * code reads it from (protocol/ is pure: it cannot read package.json at run
 * time, and the built JavaScript must not depend on where package.json lies).
 * Run by `npm version` (the "version" script) and by `npm run build`;
 * `--check` only reports a difference (exit 1), for CI.
 */
import { readFileSync, writeFileSync } from 'node:fs'

const root = new URL('../', import.meta.url)
const target = new URL('protocol/version.ts', root)
const { version } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { version: string }
const text = `/**
 * The package version (package.json "version"), written by
 * scripts/sync-version.ts; test/package/version.test.ts fails when they differ.
 */
export const TRIMSWARM_VERSION = '${version}'

/** The User-Agent of trimswarm's HTTP clients: \`trimswarm/VERSION node/NODE_VERSION\`. */
export function userAgent (nodeVersion: string): string {
  return \`trimswarm/\${TRIMSWARM_VERSION} node/\${nodeVersion}\`
}
`
const current = readFileSync(target, 'utf8')
if (current !== text) {
  if (process.argv.includes('--check')) {
    process.stderr.write(`protocol/version.ts does not match package.json version ${version}: run node scripts/sync-version.ts\n`)
    process.exit(1)
  }
  writeFileSync(target, text)
}
