import { describe, expect, it } from 'vitest'
import type { Policy } from '../../protocol/api.ts'
import { DEFAULT_POLICY } from '../../coordinator/constants.ts'
import { createPolicyEngine, unionPolicies } from '../../coordinator/policy-engine.ts'

const base: Policy = { ...DEFAULT_POLICY, images: [] }

describe('policy engine', () => {
  it('gives nothing to a caller whose groups have no policy', () => {
    const p = unionPolicies([])
    expect(p.images).toEqual([])
    expect(p.lanSharing).toBe(false)
    expect(p.maxPeers).toBe(0)
    expect(p.groups).toEqual([])
  })

  it('unions two groups: images, any LAN sharing, most generous caps, folders', () => {
    const desk: Policy = { ...base, images: ['desk', 'common'], wanLimitBps: 2_500_000, lanSharing: false, lanUploadBps: 1_000_000, maxPeers: 4, updateWindow: { start: '22:00', end: '06:00' }, indexFolders: { linux: ['/usr'] } }
    const lab: Policy = { ...base, images: ['lab', 'common'], wanLimitBps: 5_000_000, lanSharing: true, lanUploadBps: 3_000_000, maxPeers: 2, updateWindow: { start: '12:00', end: '13:00' }, indexFolders: { linux: ['/usr', '/etc'], windows: ['C:\\Windows'] } }
    const p = unionPolicies([['desk', desk], ['lab', lab]])
    expect(p.groups).toEqual(['desk', 'lab'])
    expect(p.images).toEqual(['common', 'desk', 'lab'])
    expect(p.wanLimitBps).toBe(5_000_000)
    expect(p.lanUploadBps).toBe(3_000_000)
    expect(p.lanSharing).toBe(true)
    expect(p.maxPeers).toBe(4)
    expect(p.updateWindows).toEqual([{ start: '22:00', end: '06:00' }, { start: '12:00', end: '13:00' }])
    expect(p.indexFolders).toEqual({ linux: ['/usr', '/etc'], windows: ['C:\\Windows'], macos: [] })
  })

  it('transfer: background unless a group grants foreground (the more generous mode)', () => {
    expect(unionPolicies([]).transfer).toBe('background')
    expect(unionPolicies([['a', base]]).transfer).toBe('background')
    expect(unionPolicies([['a', { ...base, transfer: 'background' }]]).transfer).toBe('background')
    expect(unionPolicies([['a', { ...base, transfer: 'background' }], ['b', { ...base, transfer: 'foreground' }]]).transfer).toBe('foreground')
  })

  it('treats 0 (no cap) and no update window as the most generous', () => {
    const capped: Policy = { ...base, wanLimitBps: 1000, lanUploadBps: 1000, updateWindow: { start: '01:00', end: '02:00' } }
    const free: Policy = { ...base, wanLimitBps: 0, lanUploadBps: 0, updateWindow: null }
    const p = unionPolicies([['a', capped], ['b', free]])
    expect(p.wanLimitBps).toBe(0)
    expect(p.lanUploadBps).toBe(0)
    expect(p.updateWindows).toEqual([])
    expect(unionPolicies([['a', capped]]).wanLimitBps).toBe(1000)
  })

  it('collapses to * when any group has every image', () => {
    expect(unionPolicies([['a', { ...base, images: ['x'] }], ['b', { ...base, images: ['*'] }]]).images).toEqual(['*'])
  })

  it('reads policies from its source, ignoring groups without one, and gives the admin every image', () => {
    const store = new Map<string, Policy>([['desk', { ...base, images: ['desk'] }]])
    const engine = createPolicyEngine({ policies: { get: (g) => store.get(g) } })
    expect(engine.effective(['desk', 'unknown', 'desk'])).toMatchObject({ groups: ['desk'], images: ['desk'] })
    expect(engine.effective(['unknown']).images).toEqual([])
    expect(engine.admin().images).toEqual(['*'])
  })
})
