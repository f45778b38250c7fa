/** Listening (HTTP or HTTPS) and a graceful close of the coordinator's server. */
import { createServer as createHttpsServer } from 'node:https'
import type { Server } from 'node:http'
import { createAdaptorServer, type ServerType } from '@hono/node-server'
import type { Hono } from 'hono'
import { KEEP_ALIVE_TIMEOUT_MS, LISTEN_BACKLOG, SHUTDOWN_GRACE_MS } from './constants.ts'
import { ConfigError } from './errors.ts'
import type { CoordinatorEnv } from './interface.ts'

/** Listens on `listen` (HTTPS with `tls`); ConfigError when the address is in use. */
export async function listenOn (app: Hono<CoordinatorEnv>, listen: { host: string, port: number }, tls?: { cert: Buffer, key: Buffer }): Promise<ServerType> {
  return await new Promise((resolve, reject) => {
    const options = tls != null
      ? { fetch: app.fetch, hostname: listen.host, port: listen.port, createServer: createHttpsServer, serverOptions: { cert: tls.cert, key: tls.key } }
      : { fetch: app.fetch, hostname: listen.host, port: listen.port }
    const server = createAdaptorServer(options)
    const http = server as Server
    http.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
    http.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1000 // must exceed keepAliveTimeout (Node docs)
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(err.code === 'EADDRINUSE'
        ? new ConfigError(`cannot listen on ${listen.host}:${listen.port}: address in use`, { cause: err })
        : err)
    }
    server.once('error', onError)
    http.listen({ host: listen.host, port: listen.port, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', onError)
      resolve(server)
    })
  })
}

/** Stops accepting, lets in-flight requests finish (up to SHUTDOWN_GRACE_MS), then closes what is left. */
export async function closeServer (server: ServerType): Promise<void> {
  const s = server as Server
  const closed = new Promise<void>(resolve => { s.close(() => { resolve() }) })
  s.closeIdleConnections?.()
  const timer = setTimeout(() => { s.closeAllConnections?.() }, SHUTDOWN_GRACE_MS)
  await closed
  clearTimeout(timer)
}
