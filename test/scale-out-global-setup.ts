/**
 * vitest globalSetup: names the directory of the run's shared scale-out stack
 * (test/helpers/scale-out-stack.ts) and stops the stack at the end of the run
 * if a test file started it. Starts nothing itself: a run without a file that
 * asks for the stack costs one empty temp dir.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { stopStack } from './helpers/scale-out-stack.ts'

export default async function setup (project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-shared-stack-'))
  project.provide('scaleOutStackDir', dir)
  return async () => {
    if (existsSync(join(dir, 'pg')) || existsSync(join(dir, 'ceph'))) await stopStack(dir)
    else await rm(dir, { recursive: true, force: true })
  }
}
