/**
 * Small, realistic test images: a tree of files (incompressible, text,
 * duplicated, block-repeated and sparse) written into a raw ext4 image by
 * `mkfs.ext4 -d`, the same way shared/corpus/make-images.sh builds the big
 * corpus, so tests see file data in 4 KiB-aligned blocks, holes, metadata and
 * a journal, just a few MiB of it. Everything is derived from a seed and built
 * with a fixed UUID, hash seed and clock, so the same options give the same
 * image bytes on the same machine.
 */
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, open, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

const KiB = 1024
const MiB = 1024 * KiB
const FS_BLOCK = 4096

/** Fixed filesystem UUID and directory hash seed (as in make-images.sh) so images are reproducible. */
const FS_UUID = '2d7e0b9a-1c1f-4a49-9f59-0e0c6b1d5e01'
const FS_HASH_SEED = '5f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'
/** Every file, directory and the filesystem itself get this time (2026-01-01T00:00:00Z). */
const FIXED_EPOCH = 1_767_225_600

/** A temporary directory and the function that removes it. */
export interface TempDir {
  path: string
  cleanup: () => Promise<void>
}

/** Creates a fresh directory under the OS temp dir; call `cleanup()` (e.g. in afterAll) to remove it. */
export async function tempDir (prefix = 'trimswarm-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, cleanup: async () => { await rm(path, { recursive: true, force: true }) } }
}

/** A deterministic pseudo-random generator (mulberry32): uniform 32-bit words from a seed. */
export interface Prng {
  /** Next 32-bit unsigned word. */
  u32: () => number
  /** Integer in [min, max] (inclusive). */
  int: (min: number, max: number) => number
  /** `length` incompressible bytes. */
  bytes: (length: number) => Uint8Array
}

/**
 * A PRNG for `seed`; the same seed always yields the same sequence. Frozen:
 * golden vectors in test/fixtures/ (test/chunker/synthetic-image.ts) are built
 * from this stream, so changing it changes their expected CIDs.
 */
export function createPrng (seed: number): Prng {
  let state = (seed >>> 0) ^ 0x9e3779b9
  const u32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  return {
    u32,
    int: (min, max) => min + (u32() % (max - min + 1)),
    bytes: (length) => {
      const words = new Uint32Array(Math.ceil(length / 4))
      for (let i = 0; i < words.length; i++) words[i] = u32()
      return new Uint8Array(words.buffer, 0, length)
    }
  }
}

/** `length` seeded incompressible bytes (shorthand for `createPrng(seed).bytes(length)`). */
export function seededBytes (seed: number, length: number): Uint8Array {
  return createPrng(seed).bytes(length)
}

const WORDS = ('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et ' +
  'dolore magna aliqua package version config daemon kernel module library image block chunk peer swarm ' +
  'coordinator agent manifest network disk partition mount service socket').split(' ')

/** Text that looks like config files or docs: compressible, not block-periodic. */
function textBytes (prng: Prng, length: number): Uint8Array {
  let s = ''
  let line = 0
  while (s.length < length) {
    const n = prng.int(3, 14)
    const words: string[] = []
    for (let i = 0; i < n; i++) words.push(WORDS[prng.u32() % WORDS.length])
    s += `${line++}: ${words.join(' ')}\n`
  }
  return new TextEncoder().encode(s.slice(0, length))
}

/** Kind of content of one test file. */
export type FileKind = 'random' | 'text' | 'copy' | 'repeated' | 'sparse'

/** One file of a test tree (path relative to the tree root). */
export interface TreeFile {
  path: string
  kind: FileKind
  size: number
}

/** A built image and the tree it was built from. */
export interface TestImage {
  /** The raw ext4 image file. */
  path: string
  /** The directory tree that was copied into the image. */
  tree: string
  /** Image size in bytes (a multiple of 4096). */
  size: number
  files: TreeFile[]
}

/** Options of `makeTestImage`. */
export interface MakeTestImageOptions {
  /** Base name of `<name>.img` and `<name>.tree` under `dir` (default "image"). */
  name?: string
  /** Image size in MiB (default 8; 4 to 16 keeps tests fast). */
  sizeMiB?: number
  /** Number of files in the tree (default 24). */
  files?: number
  /** PRNG seed of all content (default 1). */
  seed?: number
  /** Total file data in KiB; default half of what the journal leaves (2 MiB of an 8 MiB image). */
  dataKiB?: number
}

const KINDS: FileKind[] = ['random', 'text', 'copy', 'random', 'repeated', 'text', 'sparse']

/** Writes one file's content (a `copy` repeats an earlier random file's bytes under a new path). */
function fileContent (prng: Prng, kind: FileKind, size: number, earlier: Uint8Array | undefined): Uint8Array {
  switch (kind) {
    case 'text':
      return textBytes(prng, size)
    case 'copy':
      return earlier ?? prng.bytes(size)
    case 'repeated': {
      // A 4 KiB pattern repeated: identical blocks inside one file (dedup within an image).
      const pattern = prng.bytes(FS_BLOCK)
      const out = new Uint8Array(size)
      for (let o = 0; o < size; o += FS_BLOCK) out.set(pattern.subarray(0, Math.min(FS_BLOCK, size - o)), o)
      return out
    }
    case 'sparse': {
      // Random data with an all-zero middle: mkfs -d keeps the zero run as a hole (zero blocks in the image).
      const out = prng.bytes(size).slice()
      const from = Math.floor(size / 4 / FS_BLOCK) * FS_BLOCK
      out.fill(0, from, Math.max(from, size - Math.floor(size / 4)))
      return out
    }
    default:
      return prng.bytes(size)
  }
}

async function writeTreeFile (root: string, rel: string, bytes: Uint8Array): Promise<void> {
  const p = join(root, rel)
  await mkdir(dirname(p), { recursive: true })
  await writeFile(p, bytes)
}

/** Sets every time stamp in the tree to FIXED_EPOCH (mkfs -d copies them into the inodes). */
async function pinTimes (root: string, files: TreeFile[]): Promise<void> {
  const dirs = new Set<string>([root])
  for (const f of files) {
    await utimes(join(root, f.path), FIXED_EPOCH, FIXED_EPOCH)
    let d = dirname(join(root, f.path))
    while (d.length > root.length) { dirs.add(d); d = dirname(d) }
  }
  for (const d of dirs) await utimes(d, FIXED_EPOCH, FIXED_EPOCH)
}

/** Every directory (relative, with a leading slash) on the way to each file, root first. */
function treePaths (files: TreeFile[]): string[] {
  const out = new Set<string>(['/'])
  for (const f of files) {
    const parts = f.path.split('/')
    for (let i = 1; i <= parts.length; i++) out.add('/' + parts.slice(0, i).join('/'))
  }
  return [...out]
}

/**
 * Builds `img` (sizeMiB) from `tree` with mkfs.ext4 -d, reproducibly: mkfs copies
 * each inode's ctime from the source, which cannot be set on the host, so a
 * debugfs pass then pins every ctime (the other times come from pinTimes and
 * E2FSPROGS_FAKE_TIME).
 */
export async function buildExt4Image (tree: string, img: string, sizeMiB: number, files: TreeFile[]): Promise<void> {
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: String(FIXED_EPOCH) }
  await rm(img, { force: true })
  await writeFile(img, '')
  await truncate(img, sizeMiB * MiB)
  await run('mkfs.ext4', [
    '-q', '-F', '-b', String(FS_BLOCK), '-U', FS_UUID,
    '-E', `hash_seed=${FS_HASH_SEED},lazy_itable_init=0`,
    '-d', tree, img
  ], { env })
  const script = `${img}.debugfs`
  await writeFile(script, treePaths(files).map(p => `sif "${p}" ctime @${FIXED_EPOCH}\n`).join(''))
  try {
    await run('debugfs', ['-w', '-f', script, img], { env })
  } finally {
    await rm(script, { force: true })
  }
}

function plan (prng: Prng, count: number, dataBytes: number): Array<{ path: string, kind: FileKind, size: number }> {
  const weights = Array.from({ length: count }, () => prng.int(1, 16))
  const total = weights.reduce((a, b) => a + b, 0)
  return weights.map((w, i) => {
    const kind = KINDS[i % KINDS.length]
    // Sizes are mostly not multiples of 4096, like real files (the last block is partly padding).
    const size = Math.max(100, Math.floor(dataBytes * w / total) - prng.int(0, 3000))
    const ext = kind === 'text' ? 'txt' : 'bin'
    return { path: `dir${i % 4}/sub${i % 3}/file-${i}.${ext}`, kind, size }
  })
}

/** Creates `<dir>/<name>.tree` (files) and `<dir>/<name>.img` (raw ext4 built from it). */
export async function makeTestImage (dir: string, options: MakeTestImageOptions = {}): Promise<TestImage> {
  const name = options.name ?? 'image'
  const sizeMiB = options.sizeMiB ?? 8
  const seed = options.seed ?? 1
  // mkfs gives images from 8 MiB up a 4 MiB journal; half of the rest leaves room for an update.
  const dataBytes = (options.dataKiB ?? Math.floor((sizeMiB - (sizeMiB >= 8 ? 4 : 0)) * 1024 / 2)) * KiB
  const prng = createPrng(seed)
  const tree = join(dir, `${name}.tree`)
  await rm(tree, { recursive: true, force: true })
  await mkdir(tree, { recursive: true })
  const files: TreeFile[] = []
  let lastRandom: Uint8Array | undefined
  for (const f of plan(prng, options.files ?? 24, dataBytes)) {
    const bytes = fileContent(prng, f.kind, f.size, lastRandom)
    if (f.kind === 'random') lastRandom = bytes
    await writeTreeFile(tree, f.path, bytes)
    files.push({ path: f.path, kind: f.kind, size: bytes.length })
  }
  await pinTimes(tree, files)
  const path = join(dir, `${name}.img`)
  await buildExt4Image(tree, path, sizeMiB, files)
  return { path, tree, size: sizeMiB * MiB, files }
}

/** Options of `makeUpdatedImage`. */
export interface MakeUpdatedImageOptions {
  /** Base name of the new image and tree (default "next"). */
  name?: string
  /** Image size in MiB (default: the base image's size). */
  sizeMiB?: number
  /** PRNG seed of the changes (default 2). */
  seed?: number
}

/** A new version of an image and what changed relative to the base tree. */
export interface UpdatedImage extends TestImage {
  changed: string[]
  added: string[]
  removed: string[]
}

/**
 * Builds a second version from `base.tree`, as an update would: about a quarter
 * of the files changed (some 4 KiB blocks of a binary rewritten, text edited in
 * place and appended), an eighth removed, new files added (one of them a renamed
 * copy of a base file).
 */
export async function makeUpdatedImage (dir: string, base: TestImage, options: MakeUpdatedImageOptions = {}): Promise<UpdatedImage> {
  const name = options.name ?? 'next'
  const sizeMiB = options.sizeMiB ?? base.size / MiB
  const prng = createPrng(options.seed ?? 2)
  const tree = join(dir, `${name}.tree`)
  await rm(tree, { recursive: true, force: true })
  await mkdir(tree, { recursive: true })
  const files: TreeFile[] = []
  const changed: string[] = []
  const added: string[] = []
  const removed: string[] = []
  for (const [i, f] of base.files.entries()) {
    const roll = (i * 7 + prng.int(0, 7)) % 8
    if (roll === 0) { removed.push(f.path); continue }
    const bytes = new Uint8Array(await readFile(join(base.tree, f.path)))
    let out = bytes
    if (roll === 1 || roll === 2) {
      if (f.kind === 'text') {
        // An edit near the start plus an appended section: later content shifts by a few bytes.
        const insert = textBytes(prng, prng.int(20, 200))
        const at = Math.min(bytes.length, prng.int(0, 2000))
        out = new Uint8Array(bytes.length + insert.length * 2)
        out.set(bytes.subarray(0, at), 0)
        out.set(insert, at)
        out.set(bytes.subarray(at), at + insert.length)
        out.set(insert, bytes.length + insert.length)
      } else {
        // A patched binary: a few whole 4 KiB blocks rewritten, the rest identical.
        out = bytes.slice()
        const blocks = Math.max(1, Math.ceil(bytes.length / FS_BLOCK))
        for (let k = 0; k < Math.min(3, blocks); k++) {
          const b = prng.int(0, blocks - 1) * FS_BLOCK
          out.set(prng.bytes(Math.min(FS_BLOCK, bytes.length - b)), b)
        }
      }
      changed.push(f.path)
    }
    await writeTreeFile(tree, f.path, out)
    files.push({ path: f.path, kind: f.kind, size: out.length })
  }
  const extra = Math.max(1, Math.floor(base.files.length / 6))
  const addBudget = Math.floor(base.files.reduce((a, f) => a + f.size, 0) / 6)
  for (let i = 0; i < extra; i++) {
    const kind: FileKind = i % 2 === 0 ? 'random' : 'text'
    const size = Math.max(100, Math.floor(addBudget / extra) - prng.int(0, 2000))
    const rel = `new/added-${i}.${kind === 'text' ? 'txt' : 'bin'}`
    const bytes = kind === 'text' ? textBytes(prng, size) : prng.bytes(size)
    await writeTreeFile(tree, rel, bytes)
    files.push({ path: rel, kind, size })
    added.push(rel)
  }
  const kept = files.find(f => f.kind === 'random' && !changed.includes(f.path))
  if (kept != null) {
    // A renamed file: same bytes under a new path, so its blocks are reusable from the base.
    const rel = `moved/${kept.path.replaceAll('/', '-')}`
    await mkdir(dirname(join(tree, rel)), { recursive: true })
    await copyFile(join(tree, kept.path), join(tree, rel))
    files.push({ path: rel, kind: 'copy', size: kept.size })
    added.push(rel)
  }
  await pinTimes(tree, files)
  const path = join(dir, `${name}.img`)
  await buildExt4Image(tree, path, sizeMiB, files)
  return { path, tree, size: sizeMiB * MiB, files, changed, added, removed }
}

/** Options of `makeHostFolder`. */
export interface MakeHostFolderOptions {
  /** Directory name under `dir` (default "host"). */
  name?: string
  /** PRNG seed (default 3). */
  seed?: number
  /** Number of unrelated files (default 4). */
  unrelated?: number
}

/** A folder of host files and which of them share content with the image. */
export interface HostFolder {
  path: string
  /** Files whose bytes equal an image file from its start (block-aligned reuse possible). */
  shared: Array<{ hostPath: string, imagePath: string }>
  /** Every file in the folder, relative to `path`. */
  files: string[]
}

/**
 * A folder like a user's disk next to the image: exact copies of about half of
 * the image's files (what Trim Transfer can find), one copy shifted by a small
 * header (not block-aligned, so not reusable per block), one truncated copy
 * (its whole blocks are reusable), and unrelated random files.
 */
export async function makeHostFolder (dir: string, image: TestImage, options: MakeHostFolderOptions = {}): Promise<HostFolder> {
  const root = join(dir, options.name ?? 'host')
  const prng = createPrng(options.seed ?? 3)
  await rm(root, { recursive: true, force: true })
  await mkdir(root, { recursive: true })
  const shared: HostFolder['shared'] = []
  const files: string[] = []
  const sources = image.files.filter(f => f.size >= FS_BLOCK)
  for (const [i, f] of sources.entries()) {
    const src = join(image.tree, f.path)
    if (i % 2 === 0) {
      const rel = `usr/share/${f.path}`
      await mkdir(dirname(join(root, rel)), { recursive: true })
      await copyFile(src, join(root, rel))
      shared.push({ hostPath: rel, imagePath: f.path })
      files.push(rel)
    } else if (i === 1) {
      const bytes = await readFile(src)
      const rel = 'shifted/with-header.bin'
      await writeTreeFile(root, rel, Buffer.concat([Buffer.from('HDR\x00'.repeat(25)), bytes]))
      files.push(rel)
    } else if (i === 3) {
      const bytes = await readFile(src)
      const rel = 'partial/truncated.bin'
      await writeTreeFile(root, rel, bytes.subarray(0, Math.max(FS_BLOCK, Math.floor(bytes.length / 2))))
      shared.push({ hostPath: rel, imagePath: f.path })
      files.push(rel)
    }
  }
  for (let i = 0; i < (options.unrelated ?? 4); i++) {
    const rel = `other/unrelated-${i}.bin`
    await writeTreeFile(root, rel, prng.bytes(prng.int(1000, 64 * KiB)))
    files.push(rel)
  }
  return { path: root, shared, files }
}

/** BLAKE3 hex of a file by the real `b3sum` binary (the reference our digests must match). */
export async function b3sumFile (path: string): Promise<string> {
  const { stdout } = await run('b3sum', ['--no-names', path])
  return stdout.trim()
}

/** BLAKE3 hex of bytes by the real `b3sum` binary (bytes go through a temp file). */
export async function b3sumBytes (bytes: Uint8Array): Promise<string> {
  const dir = await tempDir('trimswarm-b3-')
  try {
    const p = join(dir.path, 'bytes')
    await writeFile(p, bytes)
    return await b3sumFile(p)
  } finally {
    await dir.cleanup()
  }
}

/** Flips one bit (0x10) in the middle of a file, in place; flipping it again restores the file. */
export async function flipBit (path: string): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    const pos = Math.floor((await fh.stat()).size / 2)
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, pos)
    b[0] ^= 0x10
    await fh.write(b, 0, 1, pos)
  } finally {
    await fh.close()
  }
}
