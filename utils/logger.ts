/** Loggers every side may use as a default. */
import type { Logger } from './interface.ts'

const drop = (): void => {}

/** A logger that drops everything (tests, components given no logger). */
export const silentLogger: Logger = { debug: drop, info: drop, warn: drop, error: drop }
