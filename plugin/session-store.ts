import type { Session } from 'fastify'
import type { SessionStore } from '@fastify/session'
import { createError } from '@fastify/error'
import type { Cluster, Redis } from 'ioredis'

// A session store for @fastify/session on ioredis, on its own: it imports nothing of the plugin.

/** Redis failed or did not answer in time: 503, never a 500 nor a pass (the same code as the plugin's). */
export const SessionStoreUnavailableError = createError(
  'FST_TOTP_UNAVAILABLE',
  'Session store unavailable, try again shortly',
  503
)

export const DEFAULT_SESSION_PREFIX = 'sess:'
export const DEFAULT_SESSION_TTL = 86_400
export const DEFAULT_SESSION_TIMEOUT = 2_000

export interface RedisSessionStoreOptions {
  /** An ioredis client: a standalone `Redis` or a `Cluster`. */
  client: Redis | Cluster
  /**
   * Prefix of every session key (`<prefix><sessionId>`).
   * @default 'sess:'
   */
  prefix?: string
  /**
   * Lifetime in seconds of a session whose cookie has no expiry (no `maxAge`/`expires`).
   * A cookie with an expiry sets the key's TTL to the time left until it.
   * @default 86400
   */
  ttl?: number
  /**
   * Milliseconds to wait for Redis to answer a command before failing it with
   * 503 `FST_TOTP_UNAVAILABLE` (Redis hung, or down and the command queued offline).
   * @default 2000
   */
  timeout?: number
}

type Done<T> = (err: Error | null, value?: T) => void

// What a session object was last written as (id and value), on the object itself: symbol keys
// stay out of its JSON, its hash and its copies. An unchanged one is not written again.
const WRITTEN = Symbol('session written')
type Written = Session & { [WRITTEN]?: [id: string, value: string] }

// Values written by earlier versions start with a header line ('!' ... '\n') before the JSON.
const HEADER = 33 // '!'
const storedJson = (value: string): string => {
  if (value.charCodeAt(0) !== HEADER) return value
  const nl = value.indexOf('\n')
  return nl < 0 ? value : value.slice(nl + 1)
}

/**
 * A session store for `@fastify/session` on ioredis: one command per operation
 * (`SET key value PX ttl`, `GET`, `DEL`), plain JSON values, keys `<prefix><sessionId>`.
 * Values go through JSON, so session fields must be JSON-safe (a `Date` comes back as a string).
 * A session object saved again unchanged in the same request (`regenerate()` then the save on
 * send) is not written twice.
 */
export class RedisSessionStore implements SessionStore {
  readonly #client: Redis | Cluster
  readonly #prefix: string
  readonly #ttlMs: number
  readonly #timeout: number

  constructor (opts: RedisSessionStoreOptions) {
    if (!opts || typeof opts.client?.get !== 'function') {
      throw new TypeError('RedisSessionStore: `client` must be an ioredis Redis or Cluster')
    }
    const prefix = opts.prefix ?? DEFAULT_SESSION_PREFIX
    const ttl = opts.ttl ?? DEFAULT_SESSION_TTL
    const timeout = opts.timeout ?? DEFAULT_SESSION_TIMEOUT
    if (typeof prefix !== 'string') throw new TypeError('RedisSessionStore: `prefix` must be a string')
    if (!Number.isInteger(ttl) || ttl <= 0) {
      throw new TypeError('RedisSessionStore: `ttl` must be a positive integer (seconds)')
    }
    if (!Number.isInteger(timeout) || timeout <= 0) {
      throw new TypeError('RedisSessionStore: `timeout` must be a positive integer (milliseconds)')
    }
    this.#client = opts.client
    this.#prefix = prefix
    this.#ttlMs = ttl * 1000
    this.#timeout = timeout
  }

  set (sessionId: string, session: Session, callback: (err?: unknown) => void): void {
    const key = this.#prefix + sessionId
    const ttl = this.#ttlFor(session)
    if (ttl <= 0) {
      delete (session as Written)[WRITTEN]
      this.#answer(this.#client.del(key), (err) => callback(err ?? undefined))
      return
    }
    const value = JSON.stringify(session)
    const written = (session as Written)[WRITTEN]
    if (written !== undefined && written[0] === sessionId && written[1] === value) {
      callback()
      return
    }
    this.#answer(this.#client.set(key, value, 'PX', ttl), (err) => {
      if (err === null) (session as Written)[WRITTEN] = [sessionId, value]
      callback(err ?? undefined)
    })
  }

  get (sessionId: string, callback: (err: unknown, result?: Session | null) => void): void {
    this.#answer(this.#client.get(this.#prefix + sessionId), (err, value) => {
      if (err) callback(err)
      else callback(null, value == null ? null : parse(storedJson(value)))
    })
  }

  destroy (sessionId: string, callback: (err?: unknown) => void): void {
    this.#answer(this.#client.del(this.#prefix + sessionId), (err) => callback(err ?? undefined))
  }

  #ttlFor (session: Session): number {
    const expires = session.cookie?.expires
    if (expires) {
      const left = new Date(expires).getTime() - Date.now()
      if (!Number.isNaN(left)) return left
    }
    return this.#ttlMs
  }

  // One timer per command, cleared on the answer; whichever comes first wins.
  #answer<T> (command: Promise<T>, done: Done<T>): void {
    let settled = false
    const timer = setTimeout(() => {
      settled = true
      done(new SessionStoreUnavailableError({ cause: new Error(`Redis did not answer within ${this.#timeout} ms`) }))
    }, this.#timeout)
    command.then((value) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      done(null, value)
    }, (err: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      done(new SessionStoreUnavailableError({ cause: err }))
    })
  }
}

// A value this store did not write is no session: the request starts a new one.
function parse (json: string): Session | null {
  let session: unknown
  try {
    session = JSON.parse(json)
  } catch {
    return null
  }
  return session !== null && typeof session === 'object' ? session as Session : null
}
