/**
 * bin/reexec.ts in a real child process: it re-executes the process once, as
 * the same PID, with the V8 flags and glibc tunables it is given, keeps what
 * the environment already sets, and does nothing under TRIMSWARM_NO_REEXEC=1.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const REEXEC = new URL('../../bin/reexec.ts', import.meta.url).pathname

/** Runs a script that reports its pid, calls reexecWith(options) and reports again; returns both reports. */
async function probe (options: object, env: NodeJS.ProcessEnv, execArgv: string[] = []): Promise<Array<{ pid: number, execArgv: string[], tunables?: string, runs: number }>> {
  const script = `
    import { reexecWith } from ${JSON.stringify(REEXEC)}
    const runs = Number(process.env.PROBE_RUNS ?? 0) + 1
    process.env.PROBE_RUNS = String(runs)
    const report = () => console.log(JSON.stringify({ pid: process.pid, execArgv: process.execArgv, tunables: process.env.GLIBC_TUNABLES, runs }))
    report()
    reexecWith(${JSON.stringify(options)})
    report()`
  const { GLIBC_TUNABLES: _, TRIMSWARM_NO_REEXEC: __, ...base } = process.env
  const { stdout } = await run(process.execPath, [...execArgv, '--input-type=module', '-e', script], { env: { ...base, ...env } })
  return stdout.trim().split('\n').map(l => JSON.parse(l))
}

describe('reexecWith', () => {
  it('re-executes once as the same pid with the flags and tunables, then goes on', async () => {
    const lines = await probe({ nodeFlags: ['--max-old-space-size=200'], glibcTunables: { 'glibc.malloc.mmap_threshold': 1048576 } }, {}, ['--max-old-space-size=100'])
    // first run reports, re-executes (its second report never prints); the new image reports twice
    expect(lines.map(l => l.runs)).toEqual([1, 2, 2])
    expect(new Set(lines.map(l => l.pid)).size).toBe(1)
    expect(lines[2].execArgv.filter(a => a.startsWith('--max-old-space-size'))).toEqual(['--max-old-space-size=200'])
    expect(lines[2].tunables).toBe('glibc.malloc.mmap_threshold=1048576')
  })

  it('keeps the tunables the environment sets and adds only the missing ones', async () => {
    const lines = await probe({ glibcTunables: { 'glibc.malloc.mmap_threshold': 1048576, 'glibc.malloc.arena_max': 2 } }, { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' })
    expect(lines.at(-1)!.tunables).toBe('glibc.malloc.mmap_threshold=65536:glibc.malloc.arena_max=2')
    const none = await probe({ glibcTunables: { 'glibc.malloc.mmap_threshold': 1048576 } }, { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' })
    expect(none.map(l => l.runs)).toEqual([1, 1]) // nothing missing: no re-exec
  })

  it('does nothing under TRIMSWARM_NO_REEXEC=1', async () => {
    const lines = await probe({ nodeFlags: ['--max-old-space-size=200'], glibcTunables: { 'glibc.malloc.mmap_threshold': 1048576 } }, { TRIMSWARM_NO_REEXEC: '1' })
    expect(lines.map(l => l.runs)).toEqual([1, 1])
    expect(lines[1].tunables).toBeUndefined()
  })
})
