/**
 * The admin commands' way to the coordinator (`trimswarm token`, `policy`, `image`,
 * `publish`): `--coordinator URL --token-file FILE` (or TRIMSWARM_COORDINATOR and
 * TRIMSWARM_TOKEN_FILE) turned into the one coordinator client of client/, its
 * errors shown with the coordinator's own message.
 */
import type { ParseArgsOptionsConfig } from 'node:util'
import type { Schema } from '../protocol/schema.ts'
import { createCoordinatorHttp } from '../client/coordinator-http.ts'
import { readSecretFile } from '../client/secret-file.ts'
import { coordinatorOption, tokenFileOption, UsageError, type CommandArgs } from './cli-support.ts'

/** The options every admin command takes. */
export const CLIENT_OPTIONS: ParseArgsOptionsConfig = {
  coordinator: { type: 'string' },
  'token-file': { type: 'string' }
}

/** Help lines for CLIENT_OPTIONS. */
export const CLIENT_USAGE = `  --coordinator URL      coordinator base URL (or TRIMSWARM_COORDINATOR), e.g. http://127.0.0.1:8440
  --token-file FILE      file holding the admin token, e.g. DIR/admin.token (or TRIMSWARM_TOKEN_FILE)
  HTTPS with a private CA: NODE_EXTRA_CA_CERTS=ca.pem trimswarm ...`

/** How long an admin command waits for an answer. */
const ADMIN_TIMEOUT_MS = 30_000

/** Calls the coordinator's JSON API. */
export interface AdminClient {
  /** `timeoutMs`: how long to wait for the answer (default 30 s). */
  request: <T>(method: string, path: string, options?: { body?: unknown, schema?: Schema<T>, timeoutMs?: number }) => Promise<T>
}

/** --coordinator (checked) and the token of --token-file; a missing or bad option is a UsageError. */
export async function adminTarget (args: CommandArgs, usage: string): Promise<{ coordinator: string, token: string }> {
  const coordinator = coordinatorOption(args, usage)
  const tokenFile = tokenFileOption(args)
  if (tokenFile == null) throw new UsageError(`--token-file FILE (or TRIMSWARM_TOKEN_FILE) is required\n\n${usage}`)
  return { coordinator, token: await readSecretFile(tokenFile, 'token') }
}

/** Builds the client from --coordinator and --token-file; a missing option is a UsageError. */
export async function adminClientFrom (args: CommandArgs, usage: string): Promise<AdminClient> {
  const { coordinator, token } = await adminTarget(args, usage)
  const http = createCoordinatorHttp({}, { urls: [coordinator] })
  return {
    async request<T> (method: string, path: string, options: { body?: unknown, schema?: Schema<T>, timeoutMs?: number } = {}): Promise<T> {
      return await http.json(method, path, options.schema, { body: options.body, token, timeoutMs: options.timeoutMs ?? ADMIN_TIMEOUT_MS })
    }
  }
}
