/**
 * A small validation schema shared by coordinator and agent: one definition
 * gives `parse` (strict: unknown fields rejected, limits enforced) and the JSON
 * Schema served in /v1/openapi.json. Kept in-house because the API needs only
 * these few shapes and no dependency is worth a second source of truth.
 */
import { ValidationError } from './errors.ts'

/** A JSON Schema object (the subset OpenAPI 3.1 uses). */
export type JsonSchema = Record<string, unknown>

/** A validator that also describes itself as JSON Schema. */
export interface Schema<T> {
  parse: (value: unknown, path?: string) => T
  json: JsonSchema
  optional?: boolean
}

/** The TypeScript type a schema parses to. */
export type Infer<S> = S extends Schema<infer T> ? T : never

type Shape = Record<string, Schema<any>>
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends { optional: true } ? K : never }[keyof S]
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>
/** The parsed type of an object shape. */
export type InferShape<S extends Shape> = { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }

function fail (path: string, why: string): never {
  throw new ValidationError(`${path === '' ? 'body' : path}: ${why}`)
}

/** A string with optional length bounds and pattern. */
export function string (opts: { minLength?: number, maxLength?: number, pattern?: RegExp, description?: string } = {}): Schema<string> {
  const maxLength = opts.maxLength ?? 4096
  const minLength = opts.minLength ?? 0
  return {
    json: { type: 'string', minLength, maxLength,
      ...(opts.pattern != null ? { pattern: opts.pattern.source } : {}),
      ...(opts.description != null ? { description: opts.description } : {}) },
    parse (v, path = '') {
      if (typeof v !== 'string') fail(path, 'must be a string')
      if (v.length > maxLength) fail(path, `must be at most ${maxLength} characters`)
      if (v.length < minLength) fail(path, `must be at least ${minLength} characters`)
      if (v.includes('\0')) fail(path, 'must not contain NUL')
      if (opts.pattern != null && !opts.pattern.test(v)) fail(path, `must match ${opts.pattern.source}`)
      return v
    }
  }
}

/** A safe integer within bounds. */
export function integer (opts: { min?: number, max?: number, description?: string } = {}): Schema<number> {
  const min = opts.min ?? 0
  const max = opts.max ?? Number.MAX_SAFE_INTEGER
  return {
    json: { type: 'integer', minimum: min, maximum: max, ...(opts.description != null ? { description: opts.description } : {}) },
    parse (v, path = '') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(path, 'must be an integer')
      if (v < min || v > max) fail(path, `must be between ${min} and ${max}`)
      return v
    }
  }
}

/** A finite number within bounds. */
export function number (opts: { min?: number, max?: number } = {}): Schema<number> {
  const min = opts.min ?? -Number.MAX_VALUE
  const max = opts.max ?? Number.MAX_VALUE
  return {
    json: { type: 'number', minimum: min, maximum: max },
    parse (v, path = '') {
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(path, 'must be a number')
      if (v < min || v > max) fail(path, `must be between ${min} and ${max}`)
      return v
    }
  }
}

/** true or false. */
export function boolean (): Schema<boolean> {
  return {
    json: { type: 'boolean' },
    parse (v, path = '') {
      if (typeof v !== 'boolean') fail(path, 'must be true or false')
      return v
    }
  }
}

/** One of a fixed set of strings. */
export function enumOf<const T extends string> (values: readonly T[]): Schema<T> {
  return {
    json: { type: 'string', enum: [...values] },
    parse (v, path = '') {
      if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) fail(path, `must be one of ${values.join(', ')}`)
      return v as T
    }
  }
}

/** An array with a maximum length. */
export function array<T> (item: Schema<T>, opts: { maxItems?: number, minItems?: number } = {}): Schema<T[]> {
  const maxItems = opts.maxItems ?? 1000
  const minItems = opts.minItems ?? 0
  return {
    json: { type: 'array', items: item.json, maxItems, minItems },
    parse (v, path = '') {
      if (!Array.isArray(v)) fail(path, 'must be an array')
      if (v.length > maxItems) fail(path, `must have at most ${maxItems} items`)
      if (v.length < minItems) fail(path, `must have at least ${minItems} items`)
      return v.map((x, i) => item.parse(x, `${path}[${i}]`))
    }
  }
}

/** A fixed-length tuple of integers, e.g. a [start, count] range. */
export function tuple<T> (items: Array<Schema<T>>): Schema<T[]> {
  return {
    json: { type: 'array', prefixItems: items.map(i => i.json), minItems: items.length, maxItems: items.length },
    parse (v, path = '') {
      if (!Array.isArray(v) || v.length !== items.length) fail(path, `must be an array of ${items.length} items`)
      return items.map((s, i) => s.parse(v[i], `${path}[${i}]`))
    }
  }
}

/** Marks a field optional (absent is fine; present must be valid). */
export function optional<T> (s: Schema<T>): Schema<T | undefined> & { optional: true } {
  return { json: s.json, optional: true, parse: (v, path) => (v === undefined ? undefined : s.parse(v, path)) }
}

/** A value or null. */
export function nullable<T> (s: Schema<T>): Schema<T | null> {
  return { json: { anyOf: [s.json, { type: 'null' }] }, parse: (v, path) => (v === null ? null : s.parse(v, path)) }
}

/** An object with exactly these fields (unknown fields are an error). */
export function object<S extends Shape> (shape: S, opts: { description?: string } = {}): Schema<InferShape<S>> {
  const required = Object.keys(shape).filter(k => shape[k].optional !== true)
  return {
    json: {
      type: 'object',
      properties: Object.fromEntries(Object.entries(shape).map(([k, s]) => [k, s.json])),
      required,
      additionalProperties: false,
      ...(opts.description != null ? { description: opts.description } : {})
    },
    parse (v, path = '') {
      if (v == null || typeof v !== 'object' || Array.isArray(v)) fail(path, 'must be an object')
      const out: Record<string, unknown> = {}
      for (const k of Object.keys(v)) {
        if (!Object.hasOwn(shape, k)) fail(path === '' ? k : `${path}.${k}`, 'unknown field')
      }
      for (const [k, s] of Object.entries(shape)) {
        const fieldPath = path === '' ? k : `${path}.${k}`
        const x = (v as Record<string, unknown>)[k]
        if (x === undefined && s.optional !== true) fail(fieldPath, 'is required')
        const parsed = s.parse(x, fieldPath)
        if (parsed !== undefined) out[k] = parsed
      }
      return out as InferShape<S>
    }
  }
}

/** A map from names to values of one schema, with a maximum number of entries. */
export function record<T> (key: Schema<string>, value: Schema<T>, opts: { maxEntries?: number } = {}): Schema<Record<string, T>> {
  const maxEntries = opts.maxEntries ?? 1000
  return {
    json: { type: 'object', additionalProperties: value.json, propertyNames: key.json, maxProperties: maxEntries },
    parse (v, path = '') {
      if (v == null || typeof v !== 'object' || Array.isArray(v)) fail(path, 'must be an object')
      const entries = Object.entries(v)
      if (entries.length > maxEntries) fail(path, `must have at most ${maxEntries} entries`)
      const out: Record<string, T> = {}
      for (const [k, x] of entries) {
        key.parse(k, `${path}<key>`)
        out[k] = value.parse(x, path === '' ? k : `${path}.${k}`)
      }
      return out
    }
  }
}
