/**
 * bin/cli-support.ts flushStdio: `trimswarm` exits as soon as its command
 * returns (bin/main.ts), and writes to a pipe are asynchronous on Linux, so
 * output queued beyond what the pipe holds must be flushed first. A child
 * process writes 1 MiB to stdout and 1 MiB to stderr without waiting and
 * exits, into a pipe whose reader starts only after a pause (`sleep; wc -c`).
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const CLI_SUPPORT = new URL('../../bin/cli-support.ts', import.meta.url).pathname
const BYTES = 1024 * 1024
let dir: string

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'trimswarm-flush-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

/** Bytes that reach a slow reader from a process that writes 2 x BYTES, (maybe) flushes, and exits. */
async function arrived (flush: boolean): Promise<number> {
  const script = join(dir, `write-${String(flush)}.mjs`)
  await writeFile(script, `
    import { flushStdio } from ${JSON.stringify(CLI_SUPPORT)}
    process.stdout.write('o'.repeat(${BYTES}))
    process.stderr.write('e'.repeat(${BYTES}))
    ${flush ? 'await flushStdio()' : ''}
    process.exit(0)`)
  const { stdout } = await run('sh', ['-c', `"${process.execPath}" "${script}" 2>&1 | (sleep 0.3; wc -c)`])
  return Number(stdout.trim())
}

describe('flushStdio', () => {
  it('gets all of a large output through a slow pipe before the process exits', async () => {
    expect(await arrived(true)).toBe(2 * BYTES)
  })

  it('is needed: without it, exiting loses what the pipe did not take', async () => {
    expect(await arrived(false)).toBeLessThan(2 * BYTES)
  })
})
