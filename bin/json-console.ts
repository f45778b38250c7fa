/**
 * In the JSON log format nothing plain may reach the journal: the CLI's last
 * error line (cli-support reportError) and anything a library prints with
 * console.error / console.warn become JSON lines of the same shape as the
 * coordinator's and the agent's (`{"time","level","msg"}`).
 */
import { format } from 'node:util'

/** Makes console.error and console.warn write one JSON line each to stderr, for the rest of the process. */
export function consoleToJsonLines (): void {
  const line = (level: 'error' | 'warn') => (...args: unknown[]): void => {
    process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level, msg: format(...args) }) + '\n')
  }
  console.error = line('error')
  console.warn = line('warn')
}
