import { createHash, randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { BencodeError, bdecode, bencode, makeTorrent, scrapeSeeds } from '../../bench/branch/torrent.ts'

const str = (b: Uint8Array): string => Buffer.from(b).toString('latin1')
const dir = mkdtempSync(join(tmpdir(), 'branch-torrent-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('bencode', () => {
  it('encodes BEP 3 examples, dictionary keys sorted by bytes', () => {
    expect(str(bencode('spam'))).toBe('4:spam')
    expect(str(bencode(-3))).toBe('i-3e')
    expect(str(bencode(0))).toBe('i0e')
    expect(str(bencode(['spam', 'eggs']))).toBe('l4:spam4:eggse')
    expect(str(bencode({ spam: [Buffer.from('a'), Buffer.from('b')], cow: Buffer.from('moo'), Z: 1 }))).toBe('d1:Zi1e3:cow3:moo4:spaml1:a1:bee')
    expect(() => bencode(1.5)).toThrow(BencodeError)
  })

  it('decodes what it encodes, binary strings byte for byte', () => {
    const bin = randomBytes(20)
    const v = bdecode(bencode({ a: [1, -2, bin], 'piece length': 1048576 })) as Record<string, unknown>
    expect(v['piece length']).toBe(1048576)
    const [one, two, b] = v.a as [number, number, Uint8Array]
    expect([one, two]).toEqual([1, -2])
    expect(Buffer.from(b).equals(bin)).toBe(true)
  })

  it('refuses malformed input with a BencodeError', () => {
    for (const bad of ['', 'i01e', 'i-0e', 'i12', '5:abc', 'l', 'd1:ai1e', 'di1ei2ee', 'x', 'i1ei2e', '1a:x', 'l'.repeat(100) + 'e'.repeat(100)]) {
      expect(() => bdecode(Buffer.from(bad)), bad).toThrow(BencodeError)
    }
  })
})

describe('makeTorrent', () => {
  const file = join(dir, 'image.img.zst')
  const data = randomBytes(3 * 16384 + 1000)
  writeFileSync(file, data)

  it('makes a private single-file torrent with one SHA-1 per piece and the info dict\'s hash', () => {
    const t = makeTorrent(file, { announce: 'http://10.77.0.1:6969/announce', pieceLength: 16384 })
    expect(t.pieces).toBe(4)
    expect(t.length).toBe(data.length)
    const d = bdecode(t.bytes) as { announce: Uint8Array, info: { length: number, name: Uint8Array, 'piece length': number, pieces: Uint8Array, private: number } }
    expect(str(d.announce)).toBe('http://10.77.0.1:6969/announce')
    expect(d.info.private).toBe(1)
    expect(str(d.info.name)).toBe('image.img.zst')
    const expected = Buffer.concat([0, 1, 2, 3].map(i => createHash('sha1').update(data.subarray(i * 16384, (i + 1) * 16384)).digest()))
    expect(Buffer.from(d.info.pieces).equals(expected)).toBe(true)
    expect(t.infoHash).toBe(createHash('sha1').update(bencode(d.info)).digest('hex'))
    expect(() => makeTorrent(file, { announce: 'x', pieceLength: 1000 })).toThrow(RangeError)
  })

  it.skipIf(!existsSync('/usr/bin/aria2c'))('is read by aria2c with the same info hash', () => {
    const t = makeTorrent(file, { announce: 'http://10.77.0.1:6969/announce', pieceLength: 16384 })
    writeFileSync(join(dir, 'x.torrent'), t.bytes)
    const out = execFileSync('aria2c', ['-S', join(dir, 'x.torrent')], { encoding: 'utf8' })
    expect(out).toContain(`Info Hash: ${t.infoHash}`)
    expect(out).toMatch(/Piece Length: 16KiB/)
    expect(out).toMatch(/The Number of Pieces: 4/)
  })
})

describe('scrapeSeeds', () => {
  it('reads the seeds of one info hash from a tracker\'s scrape answer', () => {
    const h = randomBytes(20)
    const other = randomBytes(20)
    const answer = Buffer.concat([Buffer.from('d5:filesd20:'), h, Buffer.from('d8:completei2e10:downloadedi0e10:incompletei3ee20:'), other, Buffer.from('d8:completei9eeee')])
    expect(scrapeSeeds(answer, h.toString('hex'))).toBe(2)
    expect(scrapeSeeds(Buffer.from('d5:filesdee'), h.toString('hex'))).toBe(0)
    expect(() => scrapeSeeds(Buffer.from('le'), h.toString('hex'))).toThrow(BencodeError)
  })
})
