/**
 * The package version (package.json "version"), written by
 * scripts/sync-version.ts; test/package/version.test.ts fails when they differ.
 */
export const TRIMSWARM_VERSION = '0.1.0'

/** The User-Agent of trimswarm's HTTP clients: `trimswarm/VERSION node/NODE_VERSION`. */
export function userAgent (nodeVersion: string): string {
  return `trimswarm/${TRIMSWARM_VERSION} node/${nodeVersion}`
}
