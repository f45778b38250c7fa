/**
 * The builds `bench branch` keeps in .cache/bench-cli (bench/branch/built-cli.ts): the one in
 * use and the most recently used others, so a before/after pair keeps its compile cache while
 * old builds do not pile up.
 */
import { mkdirSync, readdirSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { pruneBuilds } from '../../bench/branch/built-cli.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
beforeEach(async () => { tmp = await tempDir('trimswarm-built-cli-') })
afterEach(async () => { await tmp.cleanup() })

describe('bench branch builds', () => {
  it('keeps the build in use and the two most recently used others; leaves what is not a build alone', () => {
    const names = ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004', '0000000000000005']
    names.forEach((name, k) => {
      mkdirSync(join(tmp.path, name))
      const t = new Date(Date.UTC(2026, 0, 1, 0, k)) // 0001 the oldest
      utimesSync(join(tmp.path, name), t, t)
    })
    mkdirSync(join(tmp.path, 'build-x1y2z3')) // a build being made
    pruneBuilds(tmp.path, join(tmp.path, names[0])) // the oldest is the one in use
    expect(readdirSync(tmp.path).sort()).toEqual(['0000000000000001', '0000000000000004', '0000000000000005', 'build-x1y2z3'])
  })
})
