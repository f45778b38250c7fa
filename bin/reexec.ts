/**
 * Re-executing a long-running command once at its start (same PID, so signals
 * and kill -9 reach the process a supervisor started) with settings that must
 * be in place when the process starts: V8 flags, and glibc tunables, which
 * glibc reads only at start. `TRIMSWARM_NO_REEXEC=1` turns it off.
 */

/** Environment variable that turns every re-exec off ("1"), e.g. to run under another allocator or a debugger. */
export const NO_REEXEC_ENV = 'TRIMSWARM_NO_REEXEC'

/** What the process should run with. */
export interface ReexecOptions {
  /** V8 flags; a flag of the same name already given is replaced. */
  nodeFlags?: readonly string[]
  /** glibc tunables (`glibc.malloc.mmap_threshold`: value); one the environment already sets is kept as it is. Linux only. */
  glibcTunables?: Readonly<Record<string, number>>
}

/**
 * Re-executes this process when it lacks a flag or tunable of `options`;
 * returns only when it does not. Call it before the process opens anything.
 */
export function reexecWith (options: ReexecOptions): void {
  if (process.env[NO_REEXEC_ENV] === '1' || typeof process.execve !== 'function') return
  const flags = options.nodeFlags ?? []
  const missingFlags = flags.some(f => !process.execArgv.includes(f))
  const tunables = process.env.GLIBC_TUNABLES ?? ''
  const missingTunables = process.platform !== 'linux'
    ? []
    : Object.entries(options.glibcTunables ?? {}).filter(([name]) => !tunables.split(':').some(t => t.startsWith(`${name}=`)))
  if (!missingFlags && missingTunables.length === 0) return
  const execArgv = [...process.execArgv.filter(a => !flags.some(f => a.startsWith(f.split('=')[0]))), ...flags]
  const env = missingTunables.length === 0
    ? process.env
    : { ...process.env, GLIBC_TUNABLES: [...(tunables === '' ? [] : [tunables]), ...missingTunables.map(([name, value]) => `${name}=${value}`)].join(':') }
  process.execve(process.execPath, [process.execPath, ...execArgv, ...process.argv.slice(1)], env)
}
