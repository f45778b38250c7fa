/** docs/PROTOCOL.md's worked manifest example is what the code produces today, and what b3sum and the CLI say. */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BEGIN, END, exampleImage, generate } from '../fixtures/make-protocol-example.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

let tmp: TempDir
beforeAll(async () => { tmp = await tempDir('trimswarm-example-') })
afterAll(async () => { await tmp.cleanup() })

describe('docs/PROTOCOL.md worked example', () => {
  it('matches the generator output byte for byte', async () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/PROTOCOL.md'), 'utf8')
    const a = doc.indexOf(BEGIN)
    const b = doc.indexOf(END)
    expect(a, 'markers present').toBeGreaterThanOrEqual(0)
    expect(doc.slice(a, b + END.length), 'rerun: node test/fixtures/make-protocol-example.ts --write').toBe(await generate())
  })

  it('its shell recipe builds the same image, and b3sum agrees with the chunk digest it shows', async () => {
    const text = await generate()
    const recipe = /```sh\n(.+)\n```/.exec(text)![1]
    execFileSync('sh', ['-c', recipe], { cwd: tmp.path })
    const img = readFileSync(join(tmp.path, 'demo.img'))
    expect(Buffer.compare(img, exampleImage())).toBe(0)
    writeFileSync(join(tmp.path, 'chunk1'), img.subarray(12288, 20480))
    const sum = execFileSync('b3sum', ['--no-names', join(tmp.path, 'chunk1')], { encoding: 'utf8' }).trim()
    expect(text).toContain(`| 1 | 12288 | 8192 | 2 | \`${sum}\``)
  })
})
