import type { TotpOperator } from './operator.js'
import type { GateState, UserRef } from './stores/store.js'
import type { TotpUser } from './options.js'

/**
 * What a session remembers for the plugin: which user (tenant `t`, id `u`) and, once a code is
 * verified, under which secret generation `g`. Without `g` it only names the user, so that a
 * linked RedisSessionStore reads the user's gate state along with the session.
 */
export interface TotpSessionState {
  t: string
  u: string
  g?: number
  /** 1: the user has a secret this session has not verified yet: a code check may come next. */
  p?: 1
}

/** Per-route settings: `false` opts a route out of the gate (sign-in, sign-out, static assets). */
export interface TotpRouteConfig {
  /** Answer while the session has not verified its code (e.g. `/totp/status`, `/totp/verify`). @default false */
  allowUnverified?: boolean
  /** Answer while an enforced user still has to set TOTP up (the setup routes). @default false */
  allowSetupRequired?: boolean
  /**
   * @internal Set by the plugin on `/verify` and `/setup/confirm`: the gate also reads the
   * user's secrets and the IP's budget, in the same round trip.
   */
  readsCode?: boolean
}

/** What the gate learnt about the request, for the plugin's routes and the app. */
export interface TotpRequestState {
  user: TotpUser
  ref: UserRef
  state: GateState
  verified: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Operator API: the same operations as the admin routes, without ability checks. */
    totp: TotpOperator
  }
  interface FastifyRequest {
    /** Set by the gate for a signed-in user on a protected route; null otherwise. */
    totp: TotpRequestState | null
  }
  interface FastifyContextConfig {
    totp?: false | TotpRouteConfig
  }
  interface Session {
    totp?: TotpSessionState
  }
}
