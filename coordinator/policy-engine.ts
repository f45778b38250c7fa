/**
 * Computes the policy in force for a caller: the union of its groups'
 * policies, each field taken at its most generous (a user in two groups gets
 * what either would give).
 */
import type { EffectivePolicy, Policy, UpdateWindow } from '../protocol/api.ts'

/** Source of group policies. */
export interface PolicySource {
  get: (group: string) => Policy | undefined
}

/** Answers "what may this caller do". */
export interface PolicyEngine {
  /** The union of the policies of `groups` (groups without a policy add nothing). */
  effective: (groups: string[]) => EffectivePolicy
  /** What the admin principal gets: every image. */
  admin: () => EffectivePolicy
}

/** The most generous of two caps where 0 means "no cap". */
function generousCap (a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : Math.max(a, b)
}

/** Unions policies. With no policy at all, nothing is allowed. */
export function unionPolicies (entries: Array<[group: string, policy: Policy]>): EffectivePolicy {
  const images = new Set<string>()
  const windows = new Map<string, UpdateWindow>()
  const folders = { linux: new Set<string>(), windows: new Set<string>(), macos: new Set<string>() }
  let anyTime = false
  const out: EffectivePolicy = {
    groups: entries.map(([g]) => g),
    images: [],
    wanLimitBps: 0,
    lanSharing: false,
    lanUploadBps: 0,
    maxPeers: 0,
    updateWindows: [],
    indexFolders: { linux: [], windows: [], macos: [] },
    transfer: 'background'
  }
  entries.forEach(([, p], i) => {
    for (const img of p.images) images.add(img)
    out.wanLimitBps = i === 0 ? p.wanLimitBps : generousCap(out.wanLimitBps, p.wanLimitBps)
    out.lanUploadBps = i === 0 ? p.lanUploadBps : generousCap(out.lanUploadBps, p.lanUploadBps)
    out.lanSharing ||= p.lanSharing
    out.maxPeers = Math.max(out.maxPeers, p.maxPeers)
    // foreground is the more generous mode: any group that grants it grants it
    if (p.transfer === 'foreground') out.transfer = 'foreground'
    // no window means "any time", which is more generous than every window
    if (p.updateWindow == null) anyTime = true
    else windows.set(`${p.updateWindow.start}-${p.updateWindow.end}`, p.updateWindow)
    for (const os of ['linux', 'windows', 'macos'] as const) for (const f of p.indexFolders[os] ?? []) folders[os].add(f)
  })
  out.images = images.has('*') ? ['*'] : [...images].sort()
  out.updateWindows = anyTime ? [] : [...windows.values()]
  out.indexFolders = { linux: [...folders.linux], windows: [...folders.windows], macos: [...folders.macos] }
  return out
}

/** A PolicyEngine over a policy source (the PolicyStore). */
export function createPolicyEngine (components: { policies: PolicySource }): PolicyEngine {
  return {
    effective (groups) {
      const entries: Array<[string, Policy]> = []
      for (const g of new Set(groups)) {
        const p = components.policies.get(g)
        if (p != null) entries.push([g, p])
      }
      return unionPolicies(entries)
    },
    admin () {
      return { ...unionPolicies([]), images: ['*'], lanSharing: true }
    }
  }
}
