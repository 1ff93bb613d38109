// The one place for the plugin's additions to Fastify's types.
import type { TotpOperator } from './operator.js'
import type { TotpRequestState, TotpRouteConfig, TotpSessionState } from './types.js'

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
