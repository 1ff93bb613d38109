import type { Session } from 'fastify'
import type { SessionStore } from '@fastify/session'
import { createHash } from 'node:crypto'
import { Command, type Cluster, type Redis } from 'ioredis'
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
  /**
   * Let fastify-totp read its gate state along with each session (one command for both) when
   * it shares this store's standalone client. Turn off where the server refuses scripts that
   * read keys they were not given (some Redis-compatible servers and proxies).
   * @default true
   */
  readAlong?: boolean
}

type Done<T> = (err: Error | null, value?: T) => void

/**
 * What fastify-totp reads along with each session, so that its gate costs no round trip of
 * its own. Internal: the plugin links itself (`link`) when the session store and the plugin
 * share one standalone ioredis client.
 */
export interface SessionReadAlong {
  /** The client the reader's keys live on: only the store's own client, standalone, links. */
  readonly client: Redis | Cluster
  /**
   * Lua run instead of GET (KEYS[1]: the session key); answers nil (no session), `{ value }`
   * (nothing read along), or one string: the fields read along, '\n', then the value as stored,
   * starting with its header line.
   */
  readonly lua: string
  /** The header line (`!...\n`) stored before this session's JSON, naming what to read along; '' for none. */
  header(session: Session): string
  /** Hands what was read along (the reply's fields) and the header line it was read by to the parsed session. */
  attach(session: Session, fields: string, header: string): void
}

// The read-along script's command: EVALSHA sent as a plain command (ioredis' defineCommand
// wraps each call in a command subclass and a promise of its own: a measurable part of the
// gate's cost on every request); NOSCRIPT, the first time on a server, falls back to EVAL.
const UTF8 = { replyEncoding: 'utf8' } as const
type ReadReply = string | [string] | null
const NOSCRIPT = (err: unknown): boolean => String((err as Error)?.message).startsWith('NOSCRIPT')

const HEADER = 33 // '!'
// What a session object was last written as (id and value), on the object itself: symbol keys
// stay out of its JSON, its hash and its copies. An unchanged one is not written again.
const WRITTEN = Symbol('fastify-totp session written')
type Written = Session & { [WRITTEN]?: [id: string, value: string] }
/** The session JSON of a stored value (past the read-along header, when it has one: '!' ... '\n'). */
export const storedJson = (value: string): string => {
  if (value.charCodeAt(0) !== HEADER) return value
  const nl = value.indexOf('\n')
  return nl < 0 ? value : value.slice(nl + 1)
}

/**
 * A session store for `@fastify/session` on ioredis: one command per operation
 * (`SET key value PX ttl`, `GET`, `DEL`), JSON values, keys `<prefix><sessionId>`.
 * Values go through JSON, so session fields must be JSON-safe (a `Date` comes back as a string).
 *
 * Shared with fastify-totp on one standalone client, the store also reads the session's user's
 * gate state in the same command (a script instead of GET): such values start with a header
 * line naming the user's keys. A session object saved again unchanged in the same request
 * (`regenerate()` then the save on send) is not written twice.
 */
export class RedisSessionStore implements SessionStore {
  readonly #client: Redis | Cluster
  readonly #prefix: string
  readonly #ttlMs: number
  readonly #timeout: number
  #readAlong: SessionReadAlong | null = null
  #readSha = ''
  readonly #linkable: boolean

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
    if (opts.readAlong !== undefined && typeof opts.readAlong !== 'boolean') throw new TypeError('RedisSessionStore: `readAlong` must be a boolean')
    this.#linkable = opts.readAlong !== false
  }

  /**
   * @internal Called by fastify-totp: reads `reader`'s state along with every session. Links only
   * to the store's own client on standalone Redis (a cluster keeps sessions and users in different
   * slots), and to one reader; returns whether it is linked to this one.
   */
  link (reader: SessionReadAlong): boolean {
    if (this.#readAlong !== null) return this.#readAlong === reader
    if (!this.#linkable || reader.client !== this.#client || this.#client.isCluster) return false
    this.#readSha = createHash('sha1').update(reader.lua).digest('hex')
    this.#readAlong = reader
    return true
  }

  set (sessionId: string, session: Session, callback: (err?: unknown) => void): void {
    const key = this.#prefix + sessionId
    const ttl = this.#ttlFor(session)
    if (ttl <= 0) {
      delete (session as Written)[WRITTEN]
      this.#answer(this.#client.del(key), (err) => callback(err ?? undefined))
      return
    }
    const value = (this.#readAlong?.header(session) ?? '') + JSON.stringify(session)
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
    const key = this.#prefix + sessionId
    const reader = this.#readAlong
    if (reader === null) {
      this.#answer(this.#client.get(key), (err, value) => {
        if (err) callback(err)
        else callback(null, value == null ? null : parse(storedJson(value)))
      })
      return
    }
    const read = (name: 'evalsha' | 'eval', script: string): void => {
      const command = new Command(name, [script, 1, key], UTF8)
      this.#client.sendCommand(command)
      this.#answer(command.promise as Promise<ReadReply>, (err, reply) => {
        if (err) {
          if (name === 'evalsha' && NOSCRIPT(err.cause)) read('eval', reader.lua)
          else callback(err)
          return
        }
        if (reply == null) {
          callback(null, null)
          return
        }
        // { value } alone: nothing was read along (no header)
        if (typeof reply !== 'string') {
          // anything else (a server or proxy answering otherwise) cannot be a session: fail closed
          if (!Array.isArray(reply) || typeof reply[0] !== 'string') callback(new TotpUnavailableError({ cause: new TypeError('the read-along script answered neither a value nor { value }') }))
          else callback(null, parse(storedJson(reply[0])))
          return
        }
        // fields '\n' header line '\n' JSON: the script matched the header line, both newlines are there
        const end = reply.indexOf('\n')
        const json = reply.indexOf('\n', end + 1) + 1
        const session = parse(reply.slice(json))
        if (session !== null) reader.attach(session, reply.slice(0, end), reply.slice(end + 1, json))
        callback(null, session)
      })
    }
    read('evalsha', this.#readSha)
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
