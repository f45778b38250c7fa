/**
 * What a successful sync prints: routine peer events (a peer that left, a reset stream, a
 * capability of another update) at debug level and only counted; counts with their
 * grammar; host index lines that say what a refresh found.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { CapabilityMismatchError, ExpiredCapabilityError, InvalidCapabilityError } from '../../protocol/capability.ts'
import { MessageTooLargeError } from '../../protocol/block-exchange.ts'
import { describeRefresh } from '../../peer-agent/host-index.ts'
import { stderrLogger } from '../../peer-agent/interface.ts'
import { plural } from '../../peer-agent/progress-reporter.ts'
import { isForeignCapability, isPeerGone, peerLog } from '../../peer-agent/swarm/peer-log.ts'

afterEach(() => { vi.restoreAllMocks() })

/** An error as libp2p and Node raise them. */
function named (name: string, message = name, extra: Record<string, unknown> = {}): Error {
  const e = new Error(message)
  e.name = name
  return Object.assign(e, extra)
}

describe('routine peer events', () => {
  it('a peer that went away: reset streams, refused or reset connections, all of a dial\'s addresses refused', () => {
    expect(isPeerGone(named('StreamResetError', 'the stream has been reset'))).toBe(true)
    expect(isPeerGone(named('Error', 'connect ECONNREFUSED 10.0.0.7:4100', { code: 'ECONNREFUSED' }))).toBe(true)
    expect(isPeerGone(new AggregateError([named('Error', 'a', { code: 'ECONNREFUSED' }), named('Error', 'b', { code: 'ECONNRESET' })], 'all dials failed'))).toBe(true)
    expect(isPeerGone(named('DialError', 'dial failed', { cause: named('Error', 'x', { code: 'ECONNREFUSED' }) }))).toBe(true)
  })

  it('not routine: a misbehaving peer, a mixed dial failure, anything else', () => {
    expect(isPeerGone(new MessageTooLargeError('frame of 99 MiB'))).toBe(false)
    expect(isPeerGone(new AggregateError([named('Error', 'a', { code: 'ECONNREFUSED' }), new Error('TLS handshake failed')], 'x'))).toBe(false)
    expect(isPeerGone(new Error('chunk 7 does not hash to its CID'))).toBe(false)
    expect(isPeerGone(undefined)).toBe(false)
  })

  it('a capability of another update or an expired one is foreign; a forged or garbled one is not', () => {
    expect(isForeignCapability(new CapabilityMismatchError('for ws@v1, not ws@v2'))).toBe(true)
    expect(isForeignCapability(new ExpiredCapabilityError('expired'))).toBe(true)
    expect(isForeignCapability(new InvalidCapabilityError('garbage'))).toBe(false)
  })

  it('peerLog: debug for a peer that left, the given level otherwise', () => {
    const lines: string[] = []
    const logger = { info: (m: string) => lines.push(`info ${m}`), warn: (m: string) => lines.push(`warn ${m}`), debug: (m: string) => lines.push(`debug ${m}`) }
    peerLog(logger, named('StreamResetError'), 'warn')('gone')
    peerLog(logger, new MessageTooLargeError('big'), 'warn')('bad')
    peerLog(logger, new Error('other'), 'info')('other')
    expect(lines).toEqual(['debug gone', 'warn bad', 'info other'])
  })

  it('the CLI logger counts debug lines and prints them only with --verbose', () => {
    const written: string[] = []
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { written.push(String(chunk)); return true })
    const quiet = stderrLogger(false)
    quiet.debug('swarm: cannot dial /ip4/10.0.0.7/tcp/4100: ECONNREFUSED')
    quiet.debug('swarm: closing stream to 12D3: StreamResetError')
    quiet.warn('something to act on')
    const verbose = stderrLogger(false, { verbose: true })
    verbose.debug('shown')
    expect(quiet.hiddenDebug()).toBe(2)
    expect(verbose.hiddenDebug()).toBe(0)
    expect(written).toEqual(['warning: something to act on\n', 'debug: shown\n'])
  })
})

describe('lines for people', () => {
  it('plural: "1 peer", "176 chunks", "0 files"', () => {
    expect(plural(1, 'peer')).toBe('1 peer')
    expect(plural(176, 'chunk')).toBe('176 chunks')
    expect(plural(0, 'file')).toBe('0 files')
  })

  it('describeRefresh: an unchanged index says so; a refresh that hashed says what', () => {
    const base = { files: 5108, unchanged: 5108, hashed: 0, removed: 0, bytesHashed: 0, blocks: 0, warnings: 0, seconds: 0.42 }
    expect(describeRefresh(base)).toBe('host index: 5108 files, all unchanged since the last build (checked in 0.4 s)')
    expect(describeRefresh({ ...base, files: 1, unchanged: 0, hashed: 1, bytesHashed: 3 * 1024 * 1024, blocks: 768, warnings: 1, seconds: 1.26 }))
      .toBe('host index: 1 file: 1 new or changed hashed (3.0 MiB, 768 blocks), 0 unchanged, 0 dropped, in 1.3 s, 1 warning')
  })
})
