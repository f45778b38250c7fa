/**
 * The JSON API client of the admin commands (`trimswarm token`, `policy`):
 * `--coordinator URL --token-file FILE` (or TRIMSWARM_COORDINATOR and
 * TRIMSWARM_TOKEN_FILE), errors rebuilt from the wire body so the user sees
 * the coordinator's message.
 */
import { readFile } from 'node:fs/promises'
import type { ParseArgsOptionsConfig } from 'node:util'
import { errorFromWire } from '../protocol/errors.ts'
import type { Schema } from '../protocol/schema.ts'
import { userAgent } from '../protocol/version.ts'
import { CliError, coordinatorOption, EXIT, tokenFileOption, UsageError, type CommandArgs } from './cli-support.ts'

/** The options every admin command takes. */
export const CLIENT_OPTIONS: ParseArgsOptionsConfig = {
  coordinator: { type: 'string' },
  'token-file': { type: 'string' }
}

/** Help lines for CLIENT_OPTIONS. */
export const CLIENT_USAGE = `  --coordinator URL      coordinator base URL (or TRIMSWARM_COORDINATOR), e.g. http://127.0.0.1:8440
  --token-file FILE      file holding the admin token, e.g. DIR/admin.token (or TRIMSWARM_TOKEN_FILE)
  HTTPS with a private CA: NODE_EXTRA_CA_CERTS=ca.pem trimswarm ...`

/** Calls the coordinator's JSON API. */
export interface AdminClient {
  /** `timeoutMs`: how long to wait for the answer (default 30 s). */
  request: <T>(method: string, path: string, options?: { body?: unknown, schema?: Schema<T>, timeoutMs?: number }) => Promise<T>
}

/** Builds the client from --coordinator and --token-file; a missing option is a UsageError. */
export async function adminClientFrom (args: CommandArgs, usage: string): Promise<AdminClient> {
  const base = coordinatorOption(args, usage)
  const tokenFile = tokenFileOption(args)
  if (tokenFile == null) throw new UsageError(`--token-file FILE (or TRIMSWARM_TOKEN_FILE) is required\n\n${usage}`)
  let url: URL
  try {
    url = new URL(base)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)')
  } catch {
    throw new UsageError(`--coordinator ${JSON.stringify(base)} is not an http:// or https:// URL\n\n${usage}`)
  }
  let token: string
  try {
    token = (await readFile(tokenFile, 'utf8')).trim()
  } catch (err) {
    throw new CliError(`cannot read token file ${tokenFile}: ${(err as Error).message}`, { cause: err })
  }
  if (token === '') throw new CliError(`token file ${tokenFile} is empty`, { exitCode: EXIT.auth })
  return {
    async request<T> (method: string, path: string, options: { body?: unknown, schema?: Schema<T>, timeoutMs?: number } = {}): Promise<T> {
      let res: Response
      try {
        res = await fetch(new URL(path, url), {
          method,
          headers: { 'user-agent': userAgent(process.versions.node), authorization: `Bearer ${token}`, ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}) },
          body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
          signal: AbortSignal.timeout(options.timeoutMs ?? 30_000)
        })
      } catch (err) {
        const cause = (err as { cause?: { code?: string, message?: string } }).cause
        throw new CliError(`cannot reach the coordinator at ${url.origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, { cause: err, exitCode: EXIT.unreachable })
      }
      const text = await res.text()
      let body: unknown
      try {
        body = text === '' ? undefined : JSON.parse(text)
      } catch {
        body = undefined
      }
      if (!res.ok) throw errorFromWire(body, `coordinator answered ${res.status} ${res.statusText}`)
      return options.schema != null ? options.schema.parse(body) : body as T
    }
  }
}
