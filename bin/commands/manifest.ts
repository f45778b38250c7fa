/** `trimswarm manifest inspect|build`: look into a (signed) manifest, or build one from an image. */
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { buildManifest, chunkCidText, manifestCidOf } from '../../chunker/index.ts'
import { toHex } from '../../protocol/block-id.ts'
import { MAX_MANIFEST_BYTES } from '../../protocol/constants.ts'
import { InvalidManifestError } from '../../protocol/errors.ts'
import { blockCount, decodeManifest, nonZeroBytes, type Manifest } from '../../protocol/manifest.ts'
import { decodeEnvelope, importPublicKey, openSignedManifest } from '../../protocol/signed-manifest.ts'
import { CliError, onePositional, requireString, type Command } from '../cli-support.ts'
import { asCliError, CHUNKING_OPTIONS, chunkingFromArgs, createOutputBuffer, untilReaderLeaves } from './chunk.ts'
import { writeFileAtomic } from '../../utils/atomic-write.ts'

const inspectUsage = `Usage: trimswarm manifest inspect FILE [--json] [--key FILE]

Shows a manifest: either a signed envelope as the coordinator serves it
(GET /v1/images/:name/versions/:version/manifest) or bare manifest bytes (as
written by \`trimswarm manifest build\`). Every field is validated; a
truncated, tampered or non-canonical file is refused with the reason.

Options
  --key FILE   verify the envelope's Ed25519 signature with this public key:
               a file holding the raw 32-byte key, its base64 text, or the
               JSON of GET /v1/key ({"algorithm": "Ed25519", "publicKey": ...}).
               A signature that does not verify is an error (exit 1).
  --json       print the fields as JSON (chunks listed with offsets and CIDs;
               block prefixes counted, not listed)
  -h, --help   this text

Exit codes: 0 ok, 2 bad usage, 6 invalid or unverifiable manifest, 7 file missing
or unreadable, 1 other failures; all codes: trimswarm --help.`

const buildUsage = `Usage: trimswarm manifest build IMAGE --image NAME --version V --out FILE
                               [--min-blocks N] [--avg-blocks N] [--max-blocks N]

Scans IMAGE once and writes its unsigned manifest (canonical dag-cbor, see
docs/PROTOCOL.md "Manifest") to FILE, atomically: a temporary file beside it
is written, fsynced and renamed, so FILE is either absent/old or complete.
Prints the manifest's CID. The chunking options are those of \`trimswarm chunk\`.

Exit codes: 0 ok, 1 not an image (size not a multiple of 4096, empty, a directory),
2 bad usage, 7 a file missing or unreadable, or no folder to write to.`

const usage = `Usage: trimswarm manifest <command>

Commands
  inspect FILE [--json] [--key FILE]                      show a (signed) manifest
  build IMAGE --image NAME --version V --out FILE         build an unsigned manifest

Run \`trimswarm manifest <command> --help\` for details.`

/** Reads a file that should hold a manifest or envelope, refusing oversized ones before reading. */
async function readManifestFile (path: string): Promise<Uint8Array> {
  let st
  try {
    st = await stat(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new CliError(code === 'ENOENT' ? `${path} does not exist` : `cannot read ${path}: ${(err as Error).message}`, { cause: err })
  }
  if (st.isDirectory()) throw new CliError(`${path} is a directory, not a manifest file`)
  if (st.size === 0) throw new CliError(`${path} is empty, not a manifest`)
  if (st.size > MAX_MANIFEST_BYTES + 1024) throw new CliError(`${path} is ${st.size} bytes, larger than any manifest (${MAX_MANIFEST_BYTES} bytes)`)
  try {
    return new Uint8Array(await readFile(path))
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as Error).message}`)
  }
}

/** Reads a public key file: raw 32 bytes, base64(url) text, or the JSON of GET /v1/key. */
async function readPublicKey (path: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    bytes = new Uint8Array(await readFile(path))
  } catch (err) {
    throw new CliError(`cannot read key file ${path}: ${(err as Error).message}`)
  }
  if (bytes.length === 32) return bytes
  let text = new TextDecoder().decode(bytes).trim()
  if (text.startsWith('{')) {
    try {
      const j = JSON.parse(text) as { publicKey?: unknown }
      if (typeof j.publicKey === 'string') text = j.publicKey
    } catch {}
  }
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
    const raw = Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64')
    if (raw.length === 32) return new Uint8Array(raw)
  }
  throw new CliError(`key file ${path} must hold a raw 32-byte Ed25519 public key, its base64 text, or the JSON of GET /v1/key`)
}

interface Inspected {
  kind: 'signed' | 'manifest'
  /** true: verified with --key; false: signed, not verified (no key); null: bare manifest. */
  verified: boolean | null
  manifest: Manifest
  manifestBytes: Uint8Array
  signature?: Uint8Array
}

async function inspect (path: string, keyPath: string | undefined): Promise<Inspected> {
  const bytes = await readManifestFile(path)
  let raw: unknown
  try {
    raw = dagCbor.decode(bytes)
  } catch (err) {
    throw new InvalidManifestError(`${path} is not valid dag-cbor (truncated or corrupt): ${(err as Error).message}`)
  }
  const isEnvelope = raw != null && typeof raw === 'object' && !Array.isArray(raw) && 'signature' in raw
  if (!isEnvelope) {
    if (keyPath != null) throw new CliError(`${path} is a bare (unsigned) manifest: there is no signature to check with --key`)
    return { kind: 'manifest', verified: null, manifest: decodeManifest(bytes), manifestBytes: bytes }
  }
  const envelope = decodeEnvelope(bytes)
  if (keyPath != null) {
    const key = await importPublicKey(await readPublicKey(keyPath))
    const opened = await openSignedManifest(bytes, key)
    return { kind: 'signed', verified: true, ...opened, signature: envelope.signature }
  }
  return { kind: 'signed', verified: false, manifest: decodeManifest(envelope.manifest), manifestBytes: envelope.manifest, signature: envelope.signature }
}

function summary (m: Manifest, manifestBytes: Uint8Array): Record<string, unknown> {
  const nz = nonZeroBytes(m)
  return {
    cid: manifestCidOf(manifestBytes).toString(),
    name: m.name,
    version: m.version,
    size: m.size,
    blockSize: m.blockSize,
    chunking: m.chunking,
    nonZeroBytes: nz,
    blocks: blockCount(m),
    manifestBytes: manifestBytes.length,
    chunkCount: m.chunks.length
  }
}

async function writeJson (value: Record<string, unknown>, m: Manifest): Promise<void> {
  // Chunks one per line, streamed: a big image's list is not built as one string.
  const out = createOutputBuffer()
  await out.append(JSON.stringify(value).slice(0, -1) + ', "chunks": [')
  for (const [i, c] of m.chunks.entries()) {
    await out.append(`${i === 0 ? '' : ','}\n{"offset": ${c.offset}, "length": ${c.length}, "firstBlock": ${c.firstBlock}, "cid": "${chunkCidText(c.digest)}"}`)
  }
  await out.append(m.chunks.length > 0 ? '\n]}\n' : ']}\n')
  await out.flush()
}

const inspectCommand: Command = {
  summary: 'show a (signed) manifest',
  usage: inspectUsage,
  options: { json: { type: 'boolean' }, key: { type: 'string' } },
  async run (args) {
    const file = onePositional(args, 'FILE', inspectUsage)
    const keyPath = typeof args.values.key === 'string' ? args.values.key : undefined
    const r = await inspect(file, keyPath)
    const s = summary(r.manifest, r.manifestBytes)
    if (args.values.json === true) {
      await untilReaderLeaves(writeJson({
        kind: r.kind,
        verified: r.verified,
        ...(r.signature != null ? { signature: toHex(r.signature) } : {}),
        ...s
      }, r.manifest))
      return 0
    }
    const m = r.manifest
    const nz = nonZeroBytes(m)
    const MiB = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`
    const sig = r.kind === 'manifest'
      ? 'none (bare manifest)'
      : r.verified === true ? `Ed25519, verified with ${keyPath}` : 'Ed25519, NOT verified (give --key to check it)'
    console.log([
      `manifest   ${file}`,
      `signature  ${sig}`,
      `cid        ${String(s.cid)}`,
      `image      ${m.name}`,
      `version    ${m.version}`,
      `size       ${m.size} bytes (${MiB(m.size)}), block size ${m.blockSize}`,
      `non-zero   ${nz} bytes (${MiB(nz)}, ${(100 * nz / m.size).toFixed(1)} %) in ${blockCount(m)} blocks`,
      `chunks     ${m.chunks.length}${m.chunks.length > 0 ? `, mean ${(nz / m.chunks.length / 1024).toFixed(1)} KiB` : ''}` +
        ` (cut with min/avg/max ${m.chunking.minBlocks}/${m.chunking.avgBlocks}/${m.chunking.maxBlocks} blocks)`,
      `encoded    ${r.manifestBytes.length} bytes${nz > 0 ? ` (${(100 * r.manifestBytes.length / nz).toFixed(3)} % of non-zero data)` : ''}`
    ].join('\n'))
    return 0
  }
}

const buildCommand: Command = {
  summary: 'build an unsigned manifest from an image',
  usage: buildUsage,
  options: {
    image: { type: 'string' },
    version: { type: 'string' },
    out: { type: 'string' },
    ...CHUNKING_OPTIONS
  },
  async run (args) {
    const imagePath = onePositional(args, 'IMAGE', buildUsage)
    const name = requireString(args, 'image', buildUsage)
    const version = requireString(args, 'version', buildUsage)
    const out = requireString(args, 'out', buildUsage)
    const chunking = chunkingFromArgs(args, buildUsage)
    // Check where it goes before spending a scan on it.
    try {
      const st = await stat(dirname(out))
      if (!st.isDirectory()) throw new CliError(`cannot write ${out}: ${dirname(out)} is not a directory`)
    } catch (err) {
      if (err instanceof CliError) throw err
      throw new CliError(`cannot write ${out}: ${dirname(out)} does not exist`, { cause: err })
    }
    let built
    try {
      built = await buildManifest(imagePath, { name, version, chunking })
    } catch (err) {
      throw asCliError(err)
    }
    try {
      await writeFileAtomic(out, built.manifestBytes)
    } catch (err) {
      throw new CliError(`cannot write ${out}: ${(err as Error).message}`, { cause: err })
    }
    const { stats } = built
    console.log(`${out}: ${built.manifestBytes.length} bytes, ${stats.chunks} chunks, ${stats.blocks} non-zero blocks, cid ${built.cid.toString()}`)
    return 0
  }
}

const command: Command = {
  summary: 'show or build manifests',
  usage,
  subcommands: {
    inspect: async () => inspectCommand,
    build: async () => buildCommand
  }
}

export default command
