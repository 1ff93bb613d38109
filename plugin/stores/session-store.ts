import type { Session } from 'fastify'
import type { SessionStore } from '@fastify/session'
import type { Cluster, Redis } from 'ioredis'
// Fail closed: a session that cannot be read or written is a 503, never a 500 nor a pass.
import { TotpUnavailableError } from '../errors.js'


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

/**
 * A session store for `@fastify/session` on ioredis: one command per operation
 * (`SET key json PX ttl`, `GET`, `DEL`), JSON values, keys `<prefix><sessionId>`.
 * Values go through JSON, so session fields must be JSON-safe (a `Date` comes back as a string).
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
    if (!Number.isInteger(ttl) || ttl <= 0) throw new TypeError('RedisSessionStore: `ttl` must be a positive integer (seconds)')
    if (!Number.isInteger(timeout) || timeout <= 0) throw new TypeError('RedisSessionStore: `timeout` must be a positive integer (milliseconds)')
    this.#client = opts.client
    this.#prefix = prefix
    this.#ttlMs = ttl * 1000
    this.#timeout = timeout
  }

  set (sessionId: string, session: Session, callback: (err?: unknown) => void): void {
    const key = this.#prefix + sessionId
    const ttl = this.#ttlFor(session)
    const command: Promise<unknown> = ttl > 0
      ? this.#client.set(key, JSON.stringify(session), 'PX', ttl)
      : this.#client.del(key)
    this.#answer(command, (err) => callback(err ?? undefined))
  }

  get (sessionId: string, callback: (err: unknown, result?: Session | null) => void): void {
    this.#answer(this.#client.get(this.#prefix + sessionId), (err, value) => {
      if (err) {
        callback(err)
        return
      }
      if (value == null) {
        callback(null, null)
        return
      }
      let session: Session
      try {
        session = JSON.parse(value)
      } catch {
        // A value this store did not write is no session: the request starts a new one.
        callback(null, null)
        return
      }
      callback(null, session !== null && typeof session === 'object' ? session : null)
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
      done(new TotpUnavailableError({ cause: new Error(`Redis did not answer within ${this.#timeout} ms`) }))
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
      done(new TotpUnavailableError({ cause: err }))
    })
  }
}
