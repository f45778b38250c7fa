/**
 * The baselines' plain HTTP file server (GET/HEAD of files under a root),
 * standing in for the web server a network team would otherwise use: it
 * serves the zstd-compressed images and the casync index and chunk store.
 *
 * Run as its own process in the hq namespace:
 *   node bench/branch/serve.ts --root DIR --listen HOST:PORT
 * Prints "ready" once listening.
 */
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { resolve, sep } from 'node:path'
import { parseArgs } from 'node:util'

/** Maps a URL path to a file under root; null when it escapes root or is malformed. */
export function filePathFor (root: string, urlPath: string): string | null {
  let p: string
  try {
    p = decodeURIComponent(urlPath.split('?')[0])
  } catch {
    return null
  }
  if (p.includes('\0')) return null
  const base = resolve(root)
  const full = resolve(base, '.' + (p.startsWith('/') ? p : '/' + p))
  if (full !== base && !full.startsWith(base + sep)) return null
  return full
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { root: { type: 'string' }, listen: { type: 'string' } } })
  const root = values.root ?? '.'
  const [host, port] = (values.listen ?? '127.0.0.1:0').split(':')
  const server = createServer((req, res) => {
    const file = filePathFor(root, req.url ?? '/')
    if ((req.method !== 'GET' && req.method !== 'HEAD') || file == null) {
      res.writeHead(file == null ? 400 : 405).end()
      return
    }
    let size: number
    try {
      const st = statSync(file)
      if (!st.isFile()) throw new Error('not a file')
      size = st.size
    } catch {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' })
    if (req.method === 'HEAD') { res.end(); return }
    createReadStream(file).on('error', () => res.destroy()).pipe(res)
  })
  server.keepAliveTimeout = 30_000
  server.listen(Number(port), host)
  await once(server, 'listening')
  const addr = server.address()
  process.stdout.write(`ready ${typeof addr === 'object' && addr != null ? addr.port : port}\n`)
  const stop = (): void => { server.closeAllConnections(); server.close(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
