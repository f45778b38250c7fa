/** The progress output: a bar redrawn in place on a TTY (rate-limited), plain lines otherwise. */
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { PROGRESS_REDRAWS_PER_SECOND } from '../../peer-agent/constants.ts'
import { createProgressReporter, formatBytes } from '../../peer-agent/progress-reporter.ts'
import type { SyncProgress } from '../../peer-agent/image-sync.ts'

function sink (): { stream: NodeJS.WriteStream, text: () => string } {
  let out = ''
  const w = new Writable({ write (chunk, _enc, cb) { out += String(chunk); cb() } }) as unknown as NodeJS.WriteStream
  ;(w as { columns?: number }).columns = 200
  return { stream: w, text: () => out }
}

const p = (doneBytes: number, phase = 'origin blocks'): SyncProgress => ({
  image: 'ws', version: 'v2', phase, totalBytes: 100 * 1024 * 1024, doneBytes, bytes: { local: 40 * 1024 * 1024, peers: 0, origin: 3 * 1024 * 1024 }
})

describe('progress reporter', () => {
  it('redraws one line on a TTY, at most PROGRESS_REDRAWS_PER_SECOND times a second, with bytes by source', async () => {
    const s = sink()
    const r = createProgressReporter(s.stream, { tty: true })
    const t0 = performance.now()
    for (let i = 0; i <= 100; i++) {
      r.update(p(i * 1024 * 1024))
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    const seconds = (performance.now() - t0) / 1000
    const draws = s.text().split('\r\x1b[K').filter(x => x !== '')
    expect(draws.length).toBeGreaterThanOrEqual(1)
    expect(draws.length).toBeLessThanOrEqual(Math.ceil(seconds * PROGRESS_REDRAWS_PER_SECOND) + 1)
    expect(s.text()).not.toContain('\n')
    expect(draws.at(-1)).toMatch(/ws@v2 .*% .*MiB\/100\.0 MiB \| local 40\.0 MiB, peers 0 B, origin 3\.0 MiB \| .*\/s ETA .* \| origin blocks/)
    r.done()
    expect(s.text().endsWith('\r\x1b[K')).toBe(true)
  })

  it('writes plain lines when not a TTY, and a line on each phase change', () => {
    const s = sink()
    const r = createProgressReporter(s.stream, { tty: false })
    r.update(p(0, 'host index'))
    r.update(p(1, 'host index'))
    r.update(p(2, 'origin blocks'))
    const lines = s.text().split('\n').filter(x => x !== '')
    expect(lines.length).toBeLessThanOrEqual(2)
    expect(lines.at(-1)).toMatch(/\[origin blocks\]$/)
    expect(s.text()).not.toContain('\r')
  })

  it('formats bytes for people', () => {
    expect(formatBytes(512)).toBe('512 B')
    expect(formatBytes(2048)).toBe('2 KiB')
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MiB')
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.00 GiB')
  })
})
