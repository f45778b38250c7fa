/**
 * The code-shape check (issue 14): over the production folders it reports
 *   - functions with more than FUNCTION_LINES_MAX lines of their own (a nested
 *     function's lines count for it, not for the function around it),
 *   - files over FILE_LINES_MAX lines,
 *   - production files that refer to bench/ (an import, or any relative path
 *     into it: the shipped CLI carries no benchmarks),
 *   - lines longer than LINE_CHARS_MAX characters (counted per file).
 * Functions are found with the TypeScript compiler's own parser (the
 * `typescript` devDependency's API), so a brace in a string or a comment never
 * misleads it.
 *
 *   node scripts/code-shape.ts [--json] [--root DIR] [--allowlist FILE] [--write-allowlist] [FOLDER...]
 *
 * Without --json it prints one line per offender not in the allow-list and one
 * per allow-list entry that is no longer an offender or has grown, and exits 1
 * when there is any (0 otherwise). --write-allowlist records today's offenders
 * (with their measured sizes) as the allow-list. test/docs/code-shape.test.ts
 * runs it.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { parseArgs } from 'node:util'
import { API } from 'typescript/unstable/sync'
import { SyntaxKind, type Node, type SourceFile } from 'typescript/unstable/ast'

/** Lines of its own a function may have. */
export const FUNCTION_LINES_MAX = 80
/** Lines a file may have. */
export const FILE_LINES_MAX = 450
/** Characters a line may have. */
export const LINE_CHARS_MAX = 160
/** The production folders (those present are checked). */
export const PRODUCTION_FOLDERS = ['protocol', 'chunker', 'coordinator', 'peer-agent', 'bin', 'utils', 'client']

/** What an offender breaks. */
export type Check = 'function-lines' | 'file-lines' | 'bench-import' | 'long-lines'

/** One offender: `size` is the measure (lines of a function or file, number of long lines or of bench references). */
export interface Offender {
  check: Check
  /** Path relative to the root, with forward slashes. */
  file: string
  /** The function's name, with the names of the functions and objects around it ("createX > sync"); files: "". */
  name: string
  size: number
  /** Line (1-based) where it starts, for the reader; not part of the key. */
  line?: number
}

const FUNCTION_KINDS = new Set([
  SyntaxKind.FunctionDeclaration, SyntaxKind.FunctionExpression, SyntaxKind.ArrowFunction, SyntaxKind.MethodDeclaration,
  SyntaxKind.Constructor, SyntaxKind.GetAccessor, SyntaxKind.SetAccessor
])

/** Every .ts file (not .d.ts) under `dir`, sorted, skipping node_modules. */
function tsFiles (dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...tsFiles(path))
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path)
  }
  return out.sort()
}

/** The name a function-like node goes by: its own, or that of the variable, property or argument position holding it. */
function nameOf (node: any): string {
  if (node.name?.text != null) return String(node.name.text)
  if (node.kind === SyntaxKind.Constructor) return 'constructor'
  const parent = node.parent
  if (parent?.name?.text != null && (parent.kind === SyntaxKind.VariableDeclaration || parent.kind === SyntaxKind.PropertyAssignment ||
    parent.kind === SyntaxKind.PropertyDeclaration)) return String(parent.name.text)
  if (parent?.kind === SyntaxKind.CallExpression) {
    const callee = parent.expression
    const called = callee?.name?.text ?? callee?.text
    return `(callback of ${called ?? 'a call'})`
  }
  return '(anonymous)'
}

/** Lines spanned by `node` (first token to last). */
function spanLines (sf: SourceFile, node: Node): { first: number, last: number } {
  const first = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line
  const last = sf.getLineAndCharacterOfPosition(node.end).line
  return { first, last }
}

/** Functions over the limit in one source file, each measured by its own lines. */
function functionOffenders (sf: SourceFile, file: string, max: number): Offender[] {
  const out: Offender[] = []
  const seen = new Map<string, number>()
  const visit = (node: Node, path: string[]): void => {
    if (FUNCTION_KINDS.has(node.kind)) {
      const { first, last } = spanLines(sf, node)
      let nested = 0
      const inner = (n: Node): void => {
        if (FUNCTION_KINDS.has(n.kind)) {
          const s = spanLines(sf, n)
          nested += s.last - s.first + 1
          return
        }
        n.forEachChild(inner)
      }
      node.forEachChild(inner)
      const own = last - first + 1 - nested
      const qualified = [...path, nameOf(node)].join(' > ')
      const n = (seen.get(qualified) ?? 0) + 1
      seen.set(qualified, n)
      const name = n === 1 ? qualified : `${qualified} #${n}`
      if (own > max) out.push({ check: 'function-lines', file, name, size: own, line: first + 1 })
      node.forEachChild(child => { visit(child, [...path, nameOf(node)]) })
      return
    }
    node.forEachChild(child => { visit(child, path) })
  }
  sf.forEachChild(child => { visit(child, []) })
  return out
}

/** Relative string literals of `sf` that point into `benchDir` (imports, dynamic imports, new URL(...)). */
function benchReferences (sf: SourceFile, absFile: string, benchDir: string): number {
  let count = 0
  const visit = (node: any): void => {
    if ((node.kind === SyntaxKind.StringLiteral || node.kind === SyntaxKind.NoSubstitutionTemplateLiteral) && typeof node.text === 'string') {
      const text: string = node.text
      if (text.startsWith('.')) {
        const target = resolve(dirname(absFile), text)
        if (target === benchDir || target.startsWith(benchDir + sep)) count++
      }
    }
    node.forEachChild(visit)
  }
  sf.forEachChild(visit)
  return count
}

/** Options of measure(). */
export interface MeasureOptions {
  /** The checkout (or a test's tree) to measure. */
  root: string
  /** Folders under root to check (default: the production folders present). */
  folders?: string[]
  functionLinesMax?: number
  fileLinesMax?: number
  lineCharsMax?: number
}

/** Every offender under the folders, sorted by file, check and name. */
export function measure (options: MeasureOptions): Offender[] {
  const root = resolve(options.root)
  const folders = (options.folders ?? PRODUCTION_FOLDERS).filter(f => existsSync(join(root, f)))
  const benchDir = join(root, 'bench')
  const files = folders.flatMap(f => tsFiles(join(root, f)))
  const out: Offender[] = []
  const api = new API({ cwd: root })
  try {
    // each folder is a TypeScript project; a folder without a tsconfig.json is read as a project of its own files
    const configs = folders.map(f => join(root, f, 'tsconfig.json')).filter(existsSync)
    const snapshot = api.updateSnapshot({ openProjects: configs })
    const projects = snapshot.getProjects()
    for (const abs of files) {
      const file = relative(root, abs).split(sep).join('/')
      const text = readFileSync(abs, 'utf8')
      const lines = text.split('\n')
      const lineCount = text.endsWith('\n') ? lines.length - 1 : lines.length
      if (lineCount > (options.fileLinesMax ?? FILE_LINES_MAX)) out.push({ check: 'file-lines', file, name: '', size: lineCount })
      const long = lines.filter(l => l.length > (options.lineCharsMax ?? LINE_CHARS_MAX)).length
      if (long > 0) out.push({ check: 'long-lines', file, name: '', size: long })
      let sf: SourceFile | undefined
      for (const p of projects) {
        sf = p.program.getSourceFile(abs)
        if (sf != null) break
      }
      if (sf == null) throw new Error(`code-shape: ${file} is in no TypeScript project of ${folders.join(', ')}`)
      const refs = benchReferences(sf, abs, benchDir)
      if (refs > 0) out.push({ check: 'bench-import', file, name: '', size: refs })
      out.push(...functionOffenders(sf, file, options.functionLinesMax ?? FUNCTION_LINES_MAX))
    }
  } finally {
    api.close()
  }
  return out.sort((a, b) => a.file.localeCompare(b.file) || a.check.localeCompare(b.check) || a.name.localeCompare(b.name))
}

/** The allow-list file: offenders accepted for now, each with the size measured when it was recorded. */
export interface AllowList {
  about: string
  entries: Offender[]
}

const keyOf = (o: Offender): string => `${o.check}\u0000${o.file}\u0000${o.name}`

/** What the check finds against an allow-list. */
export interface Verdict {
  /** Offenders not in the allow-list. */
  unlisted: Offender[]
  /** Allow-listed offenders that grew past their recorded size. */
  grown: Array<{ offender: Offender, allowed: number }>
  /** Allow-list entries that are no longer offenders (remove them: the list only shrinks). */
  stale: Offender[]
}

/** Compares measured offenders with an allow-list. */
export function judge (offenders: Offender[], allow: AllowList): Verdict {
  const allowed = new Map(allow.entries.map(e => [keyOf(e), e]))
  const found = new Set(offenders.map(keyOf))
  const unlisted: Offender[] = []
  const grown: Verdict['grown'] = []
  for (const o of offenders) {
    const a = allowed.get(keyOf(o))
    if (a == null) unlisted.push(o)
    else if (o.size > a.size) grown.push({ offender: o, allowed: a.size })
  }
  return { unlisted, grown, stale: allow.entries.filter(e => !found.has(keyOf(e))) }
}

/** One offender as a line for people. */
export function describeOffender (o: Offender): string {
  const where = `${o.file}${o.line != null ? `:${o.line}` : ''}`
  switch (o.check) {
    case 'function-lines': return `${where}: function ${o.name} has ${o.size} lines of its own (limit ${FUNCTION_LINES_MAX})`
    case 'file-lines': return `${where}: ${o.size} lines (limit ${FILE_LINES_MAX})`
    case 'bench-import': return `${where}: refers to bench/ ${o.size} time(s) (production code must not)`
    case 'long-lines': return `${where}: ${o.size} line(s) longer than ${LINE_CHARS_MAX} characters`
  }
}

const ABOUT = 'Offenders of scripts/code-shape.ts accepted for now (issue 14), with the size measured when recorded. ' +
  'The list only shrinks: test/docs/code-shape.test.ts fails for an offender not listed, one that grew, and an entry that is no longer an offender.'

async function main (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, root: { type: 'string' }, allowlist: { type: 'string' }, 'write-allowlist': { type: 'boolean' } },
    allowPositionals: true
  })
  const root = resolve(values.root ?? join(import.meta.dirname, '..'))
  const allowFile = resolve(values.allowlist ?? join(root, 'test', 'docs', 'code-shape-allowlist.json'))
  const offenders = measure({ root, folders: positionals.length > 0 ? positionals : undefined })
  if (values['write-allowlist'] === true) {
    const entries = offenders.map(({ line: _line, ...o }) => o)
    // one entry a line, so that a branch fixing an offender changes one line
    const body = entries.map(e => `  ${JSON.stringify(e)}`).join(',\n')
    writeFileSync(allowFile, `{\n "about": ${JSON.stringify(ABOUT)},\n "entries": [\n${body}\n ]\n}\n`)
    process.stdout.write(`${allowFile}: ${entries.length} entries\n`)
    return 0
  }
  const allow: AllowList = existsSync(allowFile) ? JSON.parse(readFileSync(allowFile, 'utf8')) : { about: ABOUT, entries: [] }
  const verdict = judge(offenders, allow)
  if (values.json === true) {
    process.stdout.write(JSON.stringify({ offenders, ...verdict }) + '\n')
  } else {
    for (const o of verdict.unlisted) process.stdout.write(`${describeOffender(o)}\n`)
    for (const g of verdict.grown) process.stdout.write(`${describeOffender(g.offender)}; grew from ${g.allowed} (allow-list)\n`)
    for (const s of verdict.stale) process.stdout.write(`${s.file}: allow-list entry ${s.check} ${s.name} is no longer an offender: remove it\n`)
  }
  return verdict.unlisted.length + verdict.grown.length + verdict.stale.length > 0 ? 1 : 0
}

if (import.meta.main) {
  try {
    process.exitCode = await main(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`code-shape: ${(err as Error).message}\n`)
    process.exitCode = 2
  }
}
