/**
 * `scripts/build.sh`'s JavaScript: the CLI (bin/main.ts) and everything it imports, bundled by
 * rolldown into OUTDIR/bin/ (main.js and the chunks its commands load on demand), for plain
 * Node >= 22. An agent sync loads 71 files instead of 800 modules: an agent in a
 * branch of four spends about a fifth less CPU (docs/BENCHMARKS.md "Session 11: the shipped CLI as a bundle").
 *
 * Not bundled (left to node_modules, where npm and the .deb install them): native addons, and the
 * coordinator's store and directory clients, which only the coordinator loads and which
 * look for optional parts at run time (`pg-native`) or are large (the S3 client).
 *
 * Usage: node scripts/bundle.ts OUTDIR
 */
import { cp } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { build } from 'rolldown'

/** Packages imported at run time from node_modules, with their subpaths. */
export const EXTERNAL = ['@napi-rs/blake-hash', 'classic-level', 'level', 'pg', 'ldapts', '@aws-sdk/client-s3']

const ROOT = resolve(import.meta.dirname, '..')

/** Bundles the CLI into `outDir`/bin and copies the files the code reads at run time beside it. */
export async function bundle (outDir: string): Promise<void> {
  const bin = join(outDir, 'bin')
  await build({
    cwd: ROOT,
    // compile-cache: loaded by bin/trimswarm.js before main.js, to turn the cache on first
    input: { main: join(ROOT, 'bin', 'main.ts'), 'compile-cache': join(ROOT, 'bin', 'compile-cache.ts') },
    platform: 'node',
    external: (id) => id.startsWith('node:') || EXTERNAL.some(p => id === p || id.startsWith(`${p}/`)),
    transform: { target: 'node22' },
    logLevel: 'warn',
    output: { dir: bin, format: 'esm', entryFileNames: '[name].js', chunkFileNames: '[name]-[hash].js' }
  })
  // coordinator/console/console.ts reads its assets from './assets/' beside its module, which is now a chunk in bin/
  await cp(join(ROOT, 'coordinator', 'console', 'assets'), join(bin, 'assets'), { recursive: true })
}

if (import.meta.main) {
  const out = process.argv[2]
  if (out == null) {
    process.stderr.write('usage: node scripts/bundle.ts OUTDIR\n')
    process.exit(2)
  }
  await bundle(resolve(out))
}
