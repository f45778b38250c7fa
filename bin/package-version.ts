/**
 * trimswarm's version, read from package.json (the one place it is written):
 * the CLI hands it to the coordinator and the agent daemon for their
 * trimswarm_build_info metric.
 */
import { readFileSync } from 'node:fs'

let cached: string | undefined

/** package.json's "version", or "unknown" when it cannot be read (a damaged install still runs). */
export function packageVersion (): string {
  if (cached != null) return cached
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    cached = 'unknown'
  }
  return cached
}
