/** `trimswarm token create|list|revoke`: machine (agent) tokens, through the coordinator's admin API. */
import { TokenCreateResponse, TokenInfo, routes } from '../../protocol/api.ts'
import { TokenList } from '../../protocol/api-admin.ts'
import { adminClientFrom, CLIENT_OPTIONS, CLIENT_USAGE } from '../admin-client.ts'
import { isValidName } from '../../protocol/manifest.ts'
import { formatTable, onePositional, requireString, UsageError, type Command } from '../cli-support.ts'

const createUsage = `Usage: trimswarm token create --group GROUP [--name NAME] [--site SITE] [--json] --coordinator URL --token-file FILE

Creates a machine token for agents of GROUP (policy applies per group: see
\`trimswarm policy\`). The token is printed once; the coordinator keeps only
its SHA-256. Give it to the agents (e.g. their --token-file).

  --group GROUP          the group whose policy the token gets
  --name NAME            a label for \`token list\` (e.g. the site)
  --site SITE            the site of the token's agents: the coordinator puts
                         them in this site's rendezvous and reports, whatever
                         site an agent names (default: the config's \`sites\`
                         subnet map, else the agent's --site)
  --json                 print the whole JSON response
${CLIENT_USAGE}`

const listUsage = `Usage: trimswarm token list [--json] --coordinator URL --token-file FILE

Lists machine tokens (id, group, name, created, revoked, site); never their secrets.

  --json                 print JSON
${CLIENT_USAGE}`

const revokeUsage = `Usage: trimswarm token revoke ID --coordinator URL --token-file FILE

Revokes a machine token: requests with it get 401 from the next request on.

${CLIENT_USAGE}`

const create: Command = {
  summary: 'create a machine token for a group',
  usage: createUsage,
  options: { ...CLIENT_OPTIONS, group: { type: 'string' }, name: { type: 'string' }, site: { type: 'string' }, json: { type: 'boolean' } },
  async run (args) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}\n\n${createUsage}`)
    const group = requireString(args, 'group', createUsage)
    const name = args.values.name as string | undefined
    const site = args.values.site as string | undefined
    if (site != null && !isValidName(site)) {
      throw new UsageError(`bad --site ${JSON.stringify(site)}: use letters, digits and . _ + - (up to 128)\n\n${createUsage}`)
    }
    const client = await adminClientFrom(args, createUsage)
    const body = { group, ...(name != null ? { name } : {}), ...(site != null ? { site } : {}) }
    const res = await client.request('POST', routes.tokens, { body, schema: TokenCreateResponse })
    if (args.values.json === true) {
      process.stdout.write(JSON.stringify(res, null, 2) + '\n')
    } else {
      process.stderr.write(`created token ${res.id} for group ${res.group}${res.site != null ? ` at site ${res.site}` : ''}; it is shown only this once:\n`)
      process.stdout.write(res.token + '\n')
    }
  }
}

const list: Command = {
  summary: 'list machine tokens',
  usage: listUsage,
  options: { ...CLIENT_OPTIONS, json: { type: 'boolean' } },
  async run (args) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}\n\n${listUsage}`)
    const client = await adminClientFrom(args, listUsage)
    const { tokens } = await client.request('GET', routes.tokens, { schema: TokenList })
    if (args.values.json === true) {
      process.stdout.write(JSON.stringify(tokens, null, 2) + '\n')
      return
    }
    if (tokens.length === 0) {
      process.stdout.write('no tokens\n')
      return
    }
    // SITE last: scripts reading the earlier columns by position keep working
    const rows = [
      ['ID', 'GROUP', 'NAME', 'CREATED', 'STATE', 'SITE'],
      ...tokens.map(t => [t.id, t.group, t.name, t.createdAt, t.revoked ? 'revoked' : 'active', t.site ?? '-'])
    ]
    process.stdout.write(formatTable(rows))
  }
}

const revoke: Command = {
  summary: 'revoke a machine token',
  usage: revokeUsage,
  options: { ...CLIENT_OPTIONS },
  async run (args) {
    const id = onePositional(args, 'token id', revokeUsage)
    const client = await adminClientFrom(args, revokeUsage)
    const info = await client.request('DELETE', routes.token(id), { schema: TokenInfo })
    process.stdout.write(`revoked token ${info.id} (group ${info.group})\n`)
  }
}

const command: Command = {
  summary: 'machine tokens for agents',
  usage: `Usage: trimswarm token <create|list|revoke> [options]   (each takes --help)

Machine tokens let agents call the coordinator as members of one group.

  create --group G [--name N] [--site S]   create a token (printed once)
  list                          list tokens
  revoke ID                     revoke a token at once`,
  subcommands: {
    create: async () => create,
    list: async () => list,
    revoke: async () => revoke
  }
}

export default command
