/** `trimswarm policy set|show|list|delete`: per-group policy, through the coordinator's admin API. */
import { Policy, name as nameSchema, routes } from '../../protocol/api.ts'
import { TrimswarmError, ValidationError } from '../../protocol/errors.ts'
import { formatRate, parseRate } from '../../protocol/rate.ts'
import { record } from '../../protocol/schema.ts'
import { DEFAULT_POLICY } from '../../coordinator/constants.ts'
import { adminClientFrom, CLIENT_OPTIONS, CLIENT_USAGE } from '../admin-client.ts'
import { onePositional, UsageError, type CommandArgs, type Command } from '../cli-support.ts'

const setUsage = `Usage: trimswarm policy set GROUP [options] --coordinator URL --token-file FILE

Sets the policy of a directory group (or of the group of machine tokens).
Options not given keep their current value, or for a new policy the default
shown below. A user in several groups gets the union: every image of any
group, the most generous caps.

  --images A,B           images the group may get (* = every image; "" = none; default: none)
  --wan-limit RATE       cap on bytes from the coordinator per agent, with its unit: 20mbit
                         (megabits per second), 5MB/s (megabytes), or unlimited (default: ${formatRate(DEFAULT_POLICY.wanLimitBps)})
  --lan-sharing on|off   whether agents share blocks with LAN peers (default: ${DEFAULT_POLICY.lanSharing ? 'on' : 'off'})
  --lan-upload-limit R   cap on what an agent serves to peers, e.g. 50mbit (default: ${formatRate(DEFAULT_POLICY.lanUploadBps)})
  --max-peers N          peers an agent exchanges with at once (default: ${DEFAULT_POLICY.maxPeers})
  --transfer MODE        background (the agent daemon's WAN transfers yield to other
                         traffic) or foreground (full speed) (default: background)
  --update-window W      HH:MM-HH:MM in the agent's local time (end before start wraps midnight),
                         or "none" (default: none, any time)
  --index-linux A,B      folders Linux agents index for local reuse (Trim Transfer), e.g. /usr,/etc ("" = none; default: none)
  --index-windows A,B    same for Windows agents, e.g. C:\\Windows,C:\\Program Files
  --index-macos A,B      same for macOS agents
  --json                 print the stored policy as JSON
${CLIENT_USAGE}`

const showUsage = `Usage: trimswarm policy show GROUP [--json] --coordinator URL --token-file FILE

Shows one group's policy.

${CLIENT_USAGE}`

const listUsage = `Usage: trimswarm policy list [--json] --coordinator URL --token-file FILE

Lists every group's policy.

${CLIENT_USAGE}`

const deleteUsage = `Usage: trimswarm policy delete GROUP --coordinator URL --token-file FILE

Deletes a group's policy (its members get nothing from it any more).

${CLIENT_USAGE}`

/** The operating systems a policy names index folders for, in the order they are shown. */
const OPERATING_SYSTEMS = ['linux', 'windows', 'macos'] as const

function list (text: string): string[] {
  return text.split(',').map(s => s.trim()).filter(s => s !== '')
}

function parseWindow (text: string): Policy['updateWindow'] {
  if (text === 'none' || text === '') return null
  const m = /^(\d{2}:\d{2})-(\d{2}:\d{2})$/.exec(text.trim())
  if (m == null) throw new ValidationError(`--update-window ${JSON.stringify(text)}: use HH:MM-HH:MM (e.g. 22:00-06:00) or none`)
  return { start: m[1], end: m[2] }
}

function groupArg (args: CommandArgs, usage: string): string {
  const group = onePositional(args, 'GROUP', usage)
  try {
    return nameSchema.parse(group, 'GROUP')
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${usage}`)
  }
}

/** Applies the command-line options to a policy. */
export function applyPolicyOptions (base: Policy, v: CommandArgs['values']): Policy {
  const p: Policy = structuredClone(base)
  const str = (k: string): string | undefined => v[k] as string | undefined
  if (str('images') != null) p.images = list(str('images')!)
  if (str('wan-limit') != null) p.wanLimitBps = parseRate(str('wan-limit')!)
  if (str('lan-upload-limit') != null) p.lanUploadBps = parseRate(str('lan-upload-limit')!)
  const sharing = str('lan-sharing')
  if (sharing != null) {
    if (!['on', 'off', 'true', 'false'].includes(sharing)) throw new ValidationError(`--lan-sharing must be on or off, not ${JSON.stringify(sharing)}`)
    p.lanSharing = sharing === 'on' || sharing === 'true'
  }
  const peers = str('max-peers')
  if (peers != null) {
    if (!/^\d+$/.test(peers)) throw new ValidationError(`--max-peers must be a whole number, not ${JSON.stringify(peers)}`)
    p.maxPeers = Number(peers)
  }
  if (str('update-window') != null) p.updateWindow = parseWindow(str('update-window')!)
  const transfer = str('transfer')
  if (transfer != null) {
    if (transfer !== 'background' && transfer !== 'foreground') {
      throw new ValidationError(`--transfer must be background or foreground, not ${JSON.stringify(transfer)}`)
    }
    p.transfer = transfer
  }
  for (const os of OPERATING_SYSTEMS) {
    const folders = str(`index-${os}`)
    if (folders != null) p.indexFolders = { ...p.indexFolders, [os]: list(folders) }
  }
  return Policy.parse(p) // the same check the coordinator makes, so mistakes are reported before sending
}

/** The policy in a few lines for people. */
export function formatPolicy (group: string, p: Policy): string {
  const folders = OPERATING_SYSTEMS.filter(os => (p.indexFolders[os]?.length ?? 0) > 0).map(os => `${os}: ${p.indexFolders[os]!.join(', ')}`)
  return [
    `group ${group}`,
    `  images           ${p.images.length === 0 ? '(none)' : p.images.join(', ')}`,
    `  wan limit        ${formatRate(p.wanLimitBps)}`,
    `  lan sharing      ${p.lanSharing ? 'on' : 'off'}`,
    `  lan upload limit ${formatRate(p.lanUploadBps)}`,
    `  max peers        ${p.maxPeers}`,
    `  transfer         ${p.transfer ?? 'background'}`,
    `  update window    ${p.updateWindow == null ? 'any time' : `${p.updateWindow.start}-${p.updateWindow.end}`}`,
    `  index folders    ${folders.length === 0 ? '(none)' : folders.join('; ')}`
  ].join('\n')
}

const set: Command = {
  summary: 'set a group policy',
  usage: setUsage,
  options: {
    ...CLIENT_OPTIONS,
    images: { type: 'string' },
    'wan-limit': { type: 'string' },
    'lan-sharing': { type: 'string' },
    'lan-upload-limit': { type: 'string' },
    'max-peers': { type: 'string' },
    transfer: { type: 'string' },
    'update-window': { type: 'string' },
    'index-linux': { type: 'string' },
    'index-windows': { type: 'string' },
    'index-macos': { type: 'string' },
    json: { type: 'boolean' }
  },
  async run (args) {
    const group = groupArg(args, setUsage)
    const client = await adminClientFrom(args, setUsage)
    let current: Policy
    try {
      current = await client.request('GET', routes.policy(group), { schema: Policy })
    } catch (err) {
      if (!(err instanceof TrimswarmError && err.name === 'NotFoundError')) throw err
      current = { ...DEFAULT_POLICY, images: [] }
    }
    const next = applyPolicyOptions(current, args.values)
    const stored = await client.request('PUT', routes.policy(group), { body: next, schema: Policy })
    process.stdout.write(args.values.json === true ? JSON.stringify(stored, null, 2) + '\n' : formatPolicy(group, stored) + '\n')
  }
}

const show: Command = {
  summary: 'show a group policy',
  usage: showUsage,
  options: { ...CLIENT_OPTIONS, json: { type: 'boolean' } },
  async run (args) {
    const group = groupArg(args, showUsage)
    const client = await adminClientFrom(args, showUsage)
    const p = await client.request('GET', routes.policy(group), { schema: Policy })
    process.stdout.write(args.values.json === true ? JSON.stringify(p, null, 2) + '\n' : formatPolicy(group, p) + '\n')
  }
}

const listCmd: Command = {
  summary: 'list group policies',
  usage: listUsage,
  options: { ...CLIENT_OPTIONS, json: { type: 'boolean' } },
  async run (args) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}\n\n${listUsage}`)
    const client = await adminClientFrom(args, listUsage)
    const all = await client.request('GET', routes.policies, { schema: record(nameSchema, Policy, { maxEntries: 1_000_000 }) })
    if (args.values.json === true) {
      process.stdout.write(JSON.stringify(all, null, 2) + '\n')
      return
    }
    const groups = Object.keys(all)
    process.stdout.write(groups.length === 0 ? 'no policies\n' : groups.map(g => formatPolicy(g, all[g])).join('\n\n') + '\n')
  }
}

const del: Command = {
  summary: 'delete a group policy',
  usage: deleteUsage,
  options: { ...CLIENT_OPTIONS },
  async run (args) {
    const group = groupArg(args, deleteUsage)
    const client = await adminClientFrom(args, deleteUsage)
    await client.request('DELETE', routes.policy(group))
    process.stdout.write(`deleted the policy of group ${group}\n`)
  }
}

const command: Command = {
  summary: 'per-group policy',
  usage: `Usage: trimswarm policy <set|show|list|delete> [options]   (each takes --help)

Policy per directory group (and per machine-token group): which images, WAN
and LAN caps, LAN sharing, update window, folders indexed for local reuse.

  set GROUP [--images A,B] [--wan-limit 20mbit] [--lan-sharing on|off] ...
  show GROUP
  list
  delete GROUP`,
  subcommands: {
    set: async () => set,
    show: async () => show,
    list: async () => listCmd,
    delete: async () => del
  }
}

export default command
