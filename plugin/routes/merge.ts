// `routeOptions`: what an app adds to every route of the plugin (rate-limit config, swagger's
// `tags`/`hide`, its own hooks). The plugin's own settings win where both set one.

const HOOKS = new Set(['onRequest', 'preParsing', 'preValidation', 'preHandler', 'preSerialization', 'onSend',
  'onResponse', 'onTimeout', 'onError', 'onRequestAbort'])

type Options = Record<string, unknown>
const list = (v: unknown): unknown[] => v === undefined ? [] : Array.isArray(v) ? v : [v]
const isObject = (v: unknown): v is Options => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * Merges `extra` into a route's options, in place: hooks run the app's first, `config` and
 * `schema` merge, the route's own values win.
 */
export function mergeRouteOptions (route: Options, extra: Options): void {
  for (const [key, value] of Object.entries(extra)) {
    if (HOOKS.has(key)) route[key] = [...list(value), ...list(route[key])]
    else if (key === 'config' && isObject(value)) {
      // the gate's settings of the plugin's routes are not the app's to change (`totp: false`
      // would open the admin routes to an unverified session)
      const { totp: _ignored, ...rest } = value
      route[key] = { ...rest, ...(isObject(route[key]) ? route[key] : {}) }
    } else if (key === 'schema' && isObject(value)) {
      // the route's body, params and answers stay; the app's documentation words (tags, hide) win
      const { tags, hide, ...rest } = value
      route[key] = {
        ...rest,
        ...(isObject(route[key]) ? route[key] : {}),
        ...(tags !== undefined ? { tags } : {}),
        ...(hide !== undefined ? { hide } : {})
      }
    } else if (route[key] === undefined) route[key] = value // logLevel (the options allow nothing else)
  }
}

type Declare = (path: string, opts: unknown, handler?: unknown) => unknown
const METHODS = ['get', 'post', 'put', 'delete'] as const

/**
 * The scope the route modules declare their routes on, with `extra` merged into each route's
 * options as it is declared, so that every `onRoute` hook (@fastify/rate-limit's reads
 * `config.rateLimit` there) sees the merged options.
 */
export function withRouteOptions<S extends object> (scope: S, extra: Options): S {
  if (Object.keys(extra).length === 0) return scope
  const methods: Record<string, { value: Declare }> = {}
  for (const m of METHODS) {
    const declare = (scope as unknown as Record<string, Declare>)[m].bind(scope)
    methods[m] = {
      value: (path, opts, handler) => {
        const own: Options = typeof opts === 'function' ? {} : { ...(opts as Options) }
        mergeRouteOptions(own, extra)
        return declare(path, own, typeof opts === 'function' ? opts : handler)
      }
    }
  }
  return Object.create(scope, methods) as S
}
