/**
 * Events for the coordinator (sync.started / completed / failed, bytes by
 * source), appended to a JSON-lines file in the data dir first and then sent
 * to POST /v1/events; whatever could not be delivered stays in the file and is
 * sent on the next flush. Every event has a random id, so a batch re-sent
 * after a lost response is counted once (the coordinator reports duplicates).
 */
import { randomUUID } from 'node:crypto'
import { appendFile, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { api } from '../protocol/index.ts'
import { writeFileAtomic } from '../utils/atomic-write.ts'
import { EVENTS_BATCH_MAX, PRIVATE_FILE_MODE } from './constants.ts'
import { mkdirPrivate } from './private-files.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { CoordinatorUnreachableError } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'

/** An event before the queue stamps it. */
export type NewEvent = Omit<api.AgentEvent, 'id' | 'time' | 'agent' | 'site'> & { site?: string }

/** The agent's events queue. */
export interface EventQueue {
  /** Appends an event to the queue file (durable before it returns). */
  record: (event: NewEvent) => Promise<api.AgentEvent>
  /** Sends queued events; returns how many were delivered. Never throws for an unreachable coordinator. */
  flush: (options?: AbortOptions) => Promise<number>
  /** Events waiting in the queue. */
  pending: () => Promise<api.AgentEvent[]>
}

/** Dependencies of the queue. */
export interface EventQueueComponents {
  client: CoordinatorClient
  logger: AgentLogger
}

/** Options of the queue. */
export interface EventQueueInit {
  /** The queue file (JSON lines). */
  path: string
  /** This agent's name in events. */
  agent: string
  /** Site reported when an event names none. */
  site: string
}

/** Creates the events queue at `init.path`. */
export function createEventQueue (components: EventQueueComponents, init: EventQueueInit): EventQueue {
  let flushing: Promise<number> | undefined
  // appends and the rewrite after a send take turns: an event appended between the rewrite's
  // read and its rename would otherwise be lost
  let fileTurn: Promise<unknown> = Promise.resolve()
  async function exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = fileTurn.then(fn, fn)
    fileTurn = run.catch(() => {})
    return await run
  }

  async function pending (): Promise<api.AgentEvent[]> {
    let text: string
    try {
      text = await readFile(init.path, 'utf8')
    } catch {
      return []
    }
    const out: api.AgentEvent[] = []
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue
      try {
        out.push(api.AgentEvent.parse(JSON.parse(line)))
      } catch {
        // a line torn by a crash mid-append: dropped
      }
    }
    return out
  }

  async function doFlush (options: AbortOptions): Promise<number> {
    const events = await pending()
    let sent = 0
    while (sent < events.length) {
      const batch = events.slice(sent, sent + EVENTS_BATCH_MAX)
      try {
        await components.client.json('POST', api.routes.events, api.EventBatchResponse, { events: batch } satisfies api.EventBatch, options)
      } catch (err) {
        // they go out with the next sync or check; an unreachable coordinator is reported by the sync itself
        const log = err instanceof CoordinatorUnreachableError ? components.logger.debug : components.logger.warn
        log?.(`events: ${events.length - sent} kept for later (${(err as Error).message})`)
        break
      }
      sent += batch.length
    }
    if (sent > 0) {
      // keep the rest, plus anything appended while sending
      const sentIds = new Set(events.slice(0, sent).map(e => e.id))
      await exclusive(async () => {
        const rest = (await pending()).filter(e => !sentIds.has(e.id))
        await writeFileAtomic(init.path, rest.map(e => JSON.stringify(e) + '\n').join(''), { mode: PRIVATE_FILE_MODE })
      })
    }
    return sent
  }

  return {
    async record (event) {
      const full = api.AgentEvent.parse({
        ...event,
        id: randomUUID(),
        time: new Date().toISOString(),
        agent: init.agent,
        site: event.site ?? init.site
      })
      await mkdirPrivate(dirname(init.path))
      await exclusive(async () => { await appendFile(init.path, JSON.stringify(full) + '\n', { mode: PRIVATE_FILE_MODE }) })
      return full
    },
    async flush (options = {}) {
      // one flush at a time: two would send the same events twice
      while (flushing != null) await flushing.catch(() => 0)
      flushing = doFlush(options)
      try {
        return await flushing
      } finally {
        flushing = undefined
      }
    },
    pending
  }
}
