import { describe, expect, it } from 'vitest'
import { BranchUsageError, parseBranchFlags, publishedVersions, tbfBurst, tcRate } from '../../bench/branch/flags.ts'
import { DEFAULT_AGENTS, DEFAULT_WAN_RTT_MS, MAX_AGENTS } from '../../bench/branch/constants.ts'

const parse = (argv: string[]) => parseBranchFlags(argv, { outDir: 'out-default' })

describe('branch flags', () => {
  it('defaults: every scenario in run order, every method, a finite WAN rate', () => {
    const c = parse([])
    expect(c.agents).toBe(DEFAULT_AGENTS)
    expect(c.scenarios).toEqual(['cold', 'update', 'trim'])
    expect(c.methods).toEqual(['http', 'casync', 'bittorrent', 'trimswarm'])
    expect(c.wanRate).toBeGreaterThan(0)
    expect(c.wanRttMs).toBe(DEFAULT_WAN_RTT_MS)
    expect(c.lanRate).toBe(0)
    expect(c.outDir).toBe('out-default')
    expect(c.proxy).toBe(false)
    expect(c.indexDirs).toEqual(['/usr', '/etc', '/var/lib'])
    expect(c.agentLogs).toBe(false)
    expect(parse(['--agent-logs']).agentLogs).toBe(true)
    expect(c.fromSource).toBe(false)
    expect(parse(['--from-source']).fromSource).toBe(true)
  })

  it('parses rates with protocol/rate.ts units', () => {
    const c = parse(['--wan', '20mbit', '--lan', '1gbit', '--wan-rtt', '40ms', '--agents', '6'])
    expect(c.wanRate).toBe(2_500_000)
    expect(c.lanRate).toBe(125_000_000)
    expect(c.wanRttMs).toBe(40)
    expect(c.agents).toBe(6)
    expect(parse(['--wan', '5MB/s']).wanRate).toBe(5_000_000)
  })

  it('keeps scenarios in run order whatever order they are given in', () => {
    expect(parse(['--scenario', 'trim,cold']).scenarios).toEqual(['cold', 'trim'])
    expect(parse(['--scenario', 'update']).scenarios).toEqual(['update'])
    expect(parse(['--methods', 'trimswarm,http']).methods).toEqual(['http', 'trimswarm'])
  })

  it.each([
    [['--scenario', 'warm'], /unknown scenario "warm"/],
    [['--scenario', 'cold,nope'], /unknown scenario "nope"/],
    [['--wan', 'fast'], /--wan: cannot parse rate/],
    [['--wan', '0'], /--wan must be a finite rate/],
    [['--wan', 'unlimited'], /--wan must be a finite rate/],
    [['--lan', '12 parsecs'], /--lan: unknown rate unit/],
    [['--agents', '0'], /--agents must be an integer from 1/],
    [['--agents', String(MAX_AGENTS + 1)], /--agents must be an integer/],
    [['--agents', '2.5'], /--agents must be an integer/],
    [['--wan-rtt=-5'], /--wan-rtt must be milliseconds/],
    [['--wan-rtt', '20s'], /--wan-rtt must be milliseconds/],
    [['--methods', 'rsync'], /unknown method "rsync"/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['stray'], /positional/]
  ])('rejects %j', (argv, message) => {
    expect(() => parse(argv)).toThrow(BranchUsageError)
    expect(() => parse(argv)).toThrow(message)
  })

  it('tc rates are integer bits per second', () => {
    expect(tcRate(12_500_000)).toBe('100000000bit')
    expect(tcRate(2_500_000)).toBe('20000000bit')
  })

  it('tbf burst holds at least one tick of the rate and two MTUs', () => {
    expect(tbfBurst(12_500_000, 1500)).toBe(125_000)
    expect(tbfBurst(1000, 1500)).toBe(32 * 1024)
    expect(tbfBurst(1000, 65536)).toBe(2 * 65536 + 1024)
  })
})

describe('bench branch: the versions published', () => {
  it('publishes next.img as v2 only for the update, so cold and trim runs do not wait for its background builds', () => {
    expect(publishedVersions(['cold'])).toEqual([['base.img', 'v1']])
    expect(publishedVersions(['trim'])).toEqual([['base.img', 'v1']])
    expect(publishedVersions(['cold', 'trim'])).toEqual([['base.img', 'v1']])
    expect(publishedVersions(['update'])).toEqual([['base.img', 'v1'], ['next.img', 'v2']])
    expect(publishedVersions(['cold', 'update', 'trim'])).toEqual([['base.img', 'v1'], ['next.img', 'v2']])
  })
})
