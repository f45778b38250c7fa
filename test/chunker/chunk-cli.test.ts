/**
 * The `trimswarm chunk` and `trimswarm manifest` commands as a user runs them:
 * real processes (`node bin/trimswarm.js`), real files, and `b3sum` as the
 * judge of every chunk CID.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { toHex } from '../../protocol/block-id.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { signManifest } from '../../protocol/signed-manifest.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'
import { bench, cli, CLI, runNode, spawnNode, type CliResult as Run } from '../helpers/cli-process.ts'
import { b3sumMany } from './helpers.ts'
import { buildImage } from './synthetic-image.ts'

/** A user mistake: the given exit code, a message naming the problem, no stack trace. */
function expectFailure (r: Run, code: number, message: RegExp): void {
  expect(r.code, r.stderr).toBe(code)
  expect(r.stderr).toMatch(message)
  expect(r.stderr).not.toMatch(/\n\s+at /)
}

interface ChunkJson { size: number, blockSize: number, chunks: Array<{ offset: number, length: number, cid: string }> }

let tmp: TempDir
let ext4: string
let synthetic: string
beforeAll(async () => {
  tmp = await tempDir('trimswarm-cli-')
  ext4 = (await makeTestImage(tmp.path, { name: 'ext4', sizeMiB: 8, seed: 9 })).path
  synthetic = join(tmp.path, 'synthetic.img')
  writeFileSync(synthetic, buildImage({ seed: 3, segments: [{ zero: 1 }, { random: 90 }, { zero: 4 }, { nearlyZero: 4095 }, { copy: 30, from: 10 }, { random: 7 }, { zero: 2 }] }))
})
afterAll(async () => { await tmp.cleanup() })

describe('trimswarm chunk --json', () => {
  it.each(['ext4', 'synthetic'])('on the %s image: CIDs are b3sum of the exact bytes and chunks + zero gaps tile the image', async (which) => {
    const path = which === 'ext4' ? ext4 : synthetic
    const r = await cli(['chunk', path, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.startsWith('{"size": ')).toBe(true)
    const out = JSON.parse(r.stdout) as ChunkJson
    const image = readFileSync(path)
    expect(out.size).toBe(image.length)
    expect(out.blockSize).toBe(BLOCK_SIZE)
    expect(out.chunks.length).toBeGreaterThan(3)
    const dir = join(tmp.path, `chunks-${which}`)
    mkdirSync(dir)
    let end = 0
    const files: string[] = []
    for (const [i, c] of out.chunks.entries()) {
      expect(Object.keys(c)).toEqual(['offset', 'length', 'cid'])
      expect(c.offset % BLOCK_SIZE).toBe(0)
      expect(c.length % BLOCK_SIZE).toBe(0)
      expect(c.length).toBeGreaterThan(0)
      expect(c.offset).toBeGreaterThanOrEqual(end)
      // what is left out is all zero; what is listed has no zero block
      expect(image.subarray(end, c.offset).every(b => b === 0)).toBe(true)
      for (let o = c.offset; o < c.offset + c.length; o += BLOCK_SIZE) expect(image.subarray(o, o + BLOCK_SIZE).some(b => b !== 0)).toBe(true)
      end = c.offset + c.length
      const f = join(dir, String(i))
      writeFileSync(f, image.subarray(c.offset, c.offset + c.length))
      files.push(f)
    }
    expect(image.subarray(end).every(b => b === 0)).toBe(true)
    const sums = b3sumMany(files)
    out.chunks.forEach((c, i) => {
      const cid = CID.parse(c.cid)
      expect(cid.code).toBe(0x55)
      expect(toHex(cid.multihash.digest)).toBe(sums[i])
    })
  })

  it('honours chunking options (max 4 blocks: no chunk longer)', async () => {
    const r = await cli(['chunk', ext4, '--json', '--min-blocks', '1', '--avg-blocks', '2', '--max-blocks', '4'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as ChunkJson
    expect(Math.max(...out.chunks.map(c => c.length))).toBe(4 * BLOCK_SIZE)
  })

  it('prints a summary without --json', async () => {
    const r = await cli(['chunk', ext4])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^size +8388608 bytes/m)
    expect(r.stdout).toMatch(/^chunks +\d+, mean/m)
    expect(r.stdout).toMatch(/^manifest +\d+ bytes/m)
  })

  it('stops quietly (exit 0, no error) when the reader closes the pipe early', async () => {
    const { child, done } = spawnNode([CLI, 'chunk', ext4, '--json', '--max-blocks', '1', '--min-blocks', '1', '--avg-blocks', '1'])
    child.stdout!.once('data', () => { child.stdout!.destroy() })
    const r = await done
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
  })

  it('--help explains the command', async () => {
    const r = await cli(['chunk', '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/Usage: trimswarm chunk IMAGE/)
  })
})

describe.concurrent('trimswarm chunk: bad input', () => {
  it.each([
    ['missing', () => join(tmp.path, 'nope.img'), /image .*nope\.img does not exist/, 7],
    ['a directory', () => tmp.path, /is a directory/, 1],
    ['empty', () => { const p = join(tmp.path, 'empty.img'); writeFileSync(p, ''); return p }, /is empty/, 1],
    ['not whole blocks', () => { const p = join(tmp.path, 'odd.img'); writeFileSync(p, new Uint8Array(BLOCK_SIZE + 1)); return p }, /4097 bytes, not a multiple of the 4096-byte block size/, 1]
  ])('%s image: a clear message and its exit code (7: a file that cannot be read, 1: not an image)', async (_what, make, message, code) => {
    expectFailure(await cli(['chunk', make(), '--json']), code, message)
  })

  it('an unreadable image: exit 7 (local file problem), permission denied', async (ctx) => {
    const asRoot = process.getuid?.() === 0
    if (asRoot) {
      // root reads any file: run the CLI as nobody, which needs the checkout and Node readable by nobody
      const probe = await runNode(['-e', `require('node:fs').accessSync(${JSON.stringify(CLI)}, 4)`], { uid: 65534, gid: 65534 }).catch(() => undefined)
      if (probe?.code !== 0) ctx.skip('running as root and user nobody cannot reach the checkout or Node, so no user here lacks read access')
    }
    const dir = join(tmp.path, 'locked')
    mkdirSync(dir)
    const p = join(dir, 'locked.img')
    writeFileSync(p, new Uint8Array(2 * BLOCK_SIZE).fill(1))
    chmodSync(p, 0o000)
    if (asRoot) {
      chmodSync(tmp.path, 0o755)
      chmodSync(dir, 0o755)
    }
    expectFailure(await cli(['chunk', p], asRoot ? { uid: 65534, gid: 65534 } : {}), 7, /locked\.img is not readable \(permission denied\)/)
  })

  it.each([
    [[], /expected one IMAGE, got 0/],
    [['a.img', 'b.img'], /expected one IMAGE, got 2/],
    [['x.img', '--avg-blocks', '3'], /power of two/],
    [['x.img', '--min-blocks', 'many'], /--min-blocks must be a whole number/],
    [['x.img', '--max-blocks', '5000'], /from 1 to 1024/],
    [['x.img', '--bogus'], /Unknown option '--bogus'/]
  ])('usage %j: exit 2', async (args, message) => {
    expectFailure(await cli(['chunk', ...args]), 2, message)
  })
})

describe('trimswarm manifest build / inspect', () => {
  let out: string
  beforeAll(async () => {
    out = join(tmp.path, 'ext4.manifest')
    const r = await cli(['manifest', 'build', ext4, '--image', 'ws-linux', '--version', '2026.1', '--out', out])
    expect(r.code, r.stderr).toBe(0)
  })

  it('build writes canonical manifest bytes and prints their CID', async () => {
    const inspect = await cli(['manifest', 'inspect', out, '--json'])
    expect(inspect.code, inspect.stderr).toBe(0)
    const j = JSON.parse(inspect.stdout) as Record<string, any>
    expect(j).toMatchObject({ kind: 'manifest', verified: null, name: 'ws-linux', version: '2026.1', size: 8 * 1024 * 1024, blockSize: BLOCK_SIZE })
    expect(toHex(CID.parse(j.cid).multihash.digest)).toBe(b3sumMany([out])[0])
    // the manifest names the same chunks as `chunk --json`
    const chunks = JSON.parse((await cli(['chunk', ext4, '--json'])).stdout) as ChunkJson
    expect(j.chunks.map((c: any) => ({ offset: c.offset, length: c.length, cid: c.cid }))).toEqual(chunks.chunks)
    const human = await cli(['manifest', 'inspect', out])
    expect(human.stdout).toMatch(/^signature +none \(bare manifest\)/m)
    expect(human.stdout).toMatch(/^image +ws-linux/m)
    expect(human.stdout).toContain(j.cid)
  })

  it('inspect verifies a signed envelope with --key (raw, base64, /v1/key JSON) and refuses a wrong key or tampering', async () => {
    const keys = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
    const other = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
    const envelope = await signManifest(new Uint8Array(readFileSync(out)), keys.privateKey)
    const signed = join(tmp.path, 'signed.manifest')
    writeFileSync(signed, envelope)
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', keys.publicKey))
    writeFileSync(join(tmp.path, 'key.raw'), raw)
    writeFileSync(join(tmp.path, 'key.b64'), Buffer.from(raw).toString('base64') + '\n')
    writeFileSync(join(tmp.path, 'key.json'), JSON.stringify({ algorithm: 'Ed25519', publicKey: Buffer.from(raw).toString('base64') }))
    writeFileSync(join(tmp.path, 'other.raw'), new Uint8Array(await crypto.subtle.exportKey('raw', other.publicKey)))
    writeFileSync(join(tmp.path, 'bad.key'), 'not a key')

    for (const k of ['key.raw', 'key.b64', 'key.json']) {
      const r = await cli(['manifest', 'inspect', signed, '--key', join(tmp.path, k)])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^signature +Ed25519, verified with/m)
    }
    const unverified = await cli(['manifest', 'inspect', signed, '--json'])
    expect(JSON.parse(unverified.stdout)).toMatchObject({ kind: 'signed', verified: false, name: 'ws-linux' })

    expectFailure(await cli(['manifest', 'inspect', signed, '--key', join(tmp.path, 'other.raw')]), 6, /signature does not verify/)
    expectFailure(await cli(['manifest', 'inspect', signed, '--key', join(tmp.path, 'bad.key')]), 1, /must hold a raw 32-byte Ed25519 public key/)
    expectFailure(await cli(['manifest', 'inspect', out, '--key', join(tmp.path, 'key.raw')]), 1, /bare \(unsigned\) manifest/)

    const tampered = Buffer.from(envelope)
    tampered[tampered.length - 100] ^= 0x01 // inside the signed manifest bytes
    writeFileSync(join(tmp.path, 'tampered.manifest'), tampered)
    expectFailure(await cli(['manifest', 'inspect', join(tmp.path, 'tampered.manifest'), '--key', join(tmp.path, 'key.raw')]), 6, /signature does not verify/)
    writeFileSync(join(tmp.path, 'truncated.manifest'), envelope.subarray(0, envelope.length - 10))
    expectFailure(await cli(['manifest', 'inspect', join(tmp.path, 'truncated.manifest')]), 6, /truncated or corrupt/)
  })

  it('inspect refuses a truncated, empty or missing file', async () => {
    const bytes = readFileSync(out)
    writeFileSync(join(tmp.path, 'cut.manifest'), bytes.subarray(0, 200))
    expectFailure(await cli(['manifest', 'inspect', join(tmp.path, 'cut.manifest')]), 6, /truncated or corrupt/)
    writeFileSync(join(tmp.path, 'empty.manifest'), '')
    expectFailure(await cli(['manifest', 'inspect', join(tmp.path, 'empty.manifest')]), 1, /is empty/)
    expectFailure(await cli(['manifest', 'inspect', join(tmp.path, 'none.manifest')]), 7, /does not exist/)
  })

  it('build with bad input writes nothing, not even a temp file', async () => {
    const dir = join(tmp.path, 'outdir')
    mkdirSync(dir)
    const target = join(dir, 'm.cbor')
    expectFailure(await cli(['manifest', 'build', join(tmp.path, 'odd.img'), '--image', 'a', '--version', '1', '--out', target]), 1, /not a multiple of the 4096-byte block size/)
    expectFailure(await cli(['manifest', 'build', ext4, '--image', 'a/b', '--version', '1', '--out', target]), 1, /bad image name/)
    expectFailure(await cli(['manifest', 'build', ext4, '--version', '1', '--out', target]), 2, /--image is required/)
    expectFailure(await cli(['manifest', 'build', ext4, '--image', 'a', '--version', '1', '--out', join(tmp.path, 'no', 'such', 'dir', 'm')]), 7, /does not exist/)
    expect(existsSync(target)).toBe(false)
    expect(readdirSync(dir)).toEqual([])
  })
})

describe('benchmarks: npm run bench only, not a trimswarm command', () => {
  it('the shipped CLI has no bench command', async () => {
    expectFailure(await cli(['bench', 'hash']), 2, /unknown command "trimswarm bench"/)
  })

  it('lists the benchmarks and refuses an unknown one with the list', async () => {
    const help = await bench(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^ {2}chunk +\S/m)
    expect(help.stdout).toMatch(/^ {2}hash +\S/m)
    const chunkHelp = await bench(['chunk', '--help'])
    expect(chunkHelp.stdout).toMatch(/Usage: npm run bench -- chunk \[--image PATH\]/)
    expectFailure(await bench(['no-such-bench']), 2, /unknown benchmark "no-such-bench"; known: .*chunk/)
  })

  it('runs a benchmark, and reports its failure without a stack', async () => {
    const hash = await bench(['hash', '--mib', '8', '--runs', '1'])
    expect(hash.code, hash.stderr).toBe(0)
    expect(hash.stdout).toMatch(/hashBlocks, 4 KiB blocks, 8 MiB per call +\d+ MiB\/s/)
    expectFailure(await bench(['hash', '--mib', 'x']), 1, /--mib must be an integer/)
  })
})
