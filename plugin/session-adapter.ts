import type { FastifyInstance, FastifyRequest } from 'fastify'
import { TotpOptionsError } from './errors.js'
import type { TotpSessionState } from './types.js'

/**
 * Which plugin keeps `request.session`: `'session'` is @fastify/session (server-side, a session
 * id in the cookie), `'secure-session'` is @fastify/secure-session (the session is the cookie,
 * encrypted).
 */
export type SessionKind = 'session' | 'secure-session'

/**
 * What the plugin does with a session, whichever plugin keeps it: one object per kind, made once,
 * chosen at registration. The gate calls through it and allocates nothing of its own.
 */
export interface SessionAdapter {
  readonly kind: SessionKind
  /** The session's verified mark, if it has one. */
  get (request: FastifyRequest): TotpSessionState | undefined
  /** Puts the mark in (written with the session's next save). */
  set (request: FastifyRequest, mark: TotpSessionState): void
  /** Drops the mark, if there is one. */
  clear (request: FastifyRequest): void
  /** A new session (S5, fixation), the app's data and the mark carried over. */
  regenerate (request: FastifyRequest): Promise<void>
}

// The two plugins' session objects as far as the plugin uses them. Both plugins' typings claim
// `request.session`, and an app has only one of them, so neither is relied on here.
interface ServerSession {
  totp?: TotpSessionState
  regenerate (keep: string[]): Promise<void>
}
interface CookieSession {
  get (key: 'totp'): TotpSessionState | undefined
  set (key: 'totp', value: TotpSessionState | undefined): void
  touch (): void
}
const serverOf = (request: FastifyRequest): ServerSession | undefined =>
  (request as unknown as { session?: ServerSession }).session
const cookieOf = (request: FastifyRequest): CookieSession | undefined =>
  (request as unknown as { session?: CookieSession }).session

/** @fastify/session: the mark is a property of the session, saved in the session store. */
export const serverSessions: SessionAdapter = {
  kind: 'session',
  get: (request) => serverOf(request)?.totp,
  set: (request, mark) => { serverOf(request)!.totp = mark },
  clear: (request) => {
    const session = serverOf(request)
    if (session?.totp != null) session.totp = undefined
  },
  regenerate: async (request) => {
    const session = serverOf(request)!
    // a new id; the mark goes in with the new session's first write (the save on send has nothing new)
    const keep = Object.keys(session).filter((k) => k !== 'cookie')
    await session.regenerate(keep)
  }
}

/**
 * @fastify/secure-session: the mark lives in the encrypted cookie. Such a session has no id to
 * fix: every change is a new cookie (a fresh nonce), sent with the answer, and a copy of the old
 * one stays what it was. Revocation reaches a copied verified cookie through the generation.
 */
export const cookieSessions: SessionAdapter = {
  kind: 'secure-session',
  get: (request) => cookieOf(request)?.get('totp'),
  set: (request, mark) => { cookieOf(request)!.set('totp', mark) },
  clear: (request) => {
    const session = cookieOf(request)
    if (session?.get('totp') != null) session.set('totp', undefined)
  },
  regenerate: async (request) => {
    // the app's data stays (what @fastify/session's regenerate(keep) does); a new cookie is sent
    cookieOf(request)!.touch()
  }
}

const kSessions = Symbol('fastify-totp-gate.sessions')

/**
 * Picks the adapter at registration: the `session` option, else the session plugin registered
 * before fastify-totp-gate; refuses to start without one (`FST_TOTP_OPTIONS`). It is kept on the
 * instance for `sessionsOf()`.
 */
export function useSessions (fastify: FastifyInstance, choice: SessionKind | null): SessionAdapter {
  const server = fastify.hasPlugin('@fastify/session')
  const cookie = fastify.hasPlugin('@fastify/secure-session')
  const kind = choice ?? (server ? 'session' : cookie ? 'secure-session' : null)
  if (kind === null) {
    throw new TotpOptionsError('register @fastify/session or @fastify/secure-session before fastify-totp-gate: ' +
      'the gate keeps its verified mark in request.session')
  }
  if (kind === 'session' ? !server : !cookie) {
    throw new TotpOptionsError(`session is '${kind}' but @fastify/${kind} is not registered before fastify-totp-gate`)
  }
  // both registered: request.session is @fastify/session's (the other has another sessionName)
  if (kind === 'secure-session' && (server || !fastify.hasRequestDecorator('session'))) {
    throw new TotpOptionsError('request.session is not @fastify/secure-session\'s: register it with its ' +
      'default sessionName, \'session\' (and without @fastify/session)')
  }
  const sessions = kind === 'session' ? serverSessions : cookieSessions
  fastify.decorate(kSessions, sessions)
  return sessions
}

/** The adapter chosen at registration, for the request's app. */
export const sessionsOf = (request: FastifyRequest): SessionAdapter =>
  (request.server as unknown as Record<symbol, SessionAdapter>)[kSessions]
