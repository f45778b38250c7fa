import { describe, expect, it } from 'vitest'
import type { AbortOptions, Logger } from '../../utils/interface.ts'
import { silentLogger } from '../../utils/logger.ts'
import type { AbortOptions as CoordinatorAbortOptions, Logger as CoordinatorLogger } from '../../coordinator/interface.ts'
import type { AbortOptions as AgentAbortOptions, AgentLogger } from '../../peer-agent/interface.ts'
import { createAgentLogger } from '../../peer-agent/logger.ts'

describe('one Logger and one AbortOptions for every side', () => {
  it('the coordinator\'s and the agent\'s are the utils ones: a logger or signal of one side is taken by the other', () => {
    const lines: string[] = []
    const agent = createAgentLogger({ format: 'json', write: (l) => lines.push(l) })
    // compile-time: these assignments fail tsc -b if the types drift apart
    const asAgent: AgentLogger = silentLogger
    const asCoordinator: CoordinatorLogger = silentLogger
    const fromAgent: Pick<Logger, 'info' | 'warn'> = agent
    const options: AbortOptions = { signal: AbortSignal.abort() } satisfies CoordinatorAbortOptions & AgentAbortOptions
    fromAgent.warn('disk nearly full', { freeBytes: 1024 })
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'warn', msg: 'disk nearly full', freeBytes: 1024 })
    expect(options.signal?.aborted).toBe(true)
    expect([asAgent, asCoordinator].every(l => typeof l.info === 'function')).toBe(true)
  })

  it('silentLogger takes every level, with and without fields, and writes nothing', () => {
    for (const level of ['debug', 'info', 'warn', 'error'] as const) {
      expect(silentLogger[level]('message', { field: 1 })).toBeUndefined()
      expect(silentLogger[level]('message')).toBeUndefined()
    }
  })
})
