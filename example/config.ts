import { randomBytes } from 'node:crypto'

/** What `server.ts` needs, read from the environment by {@link configFromEnv}. */
export interface ExampleConfig {
  host: string
  port: number
  /** Where TOTP state and sessions live; null: in this process (development). */
  redis: { url: string } | { clusterNodes: Array<{ host: string; port: number }> } | null
  /** Base64 of 32 bytes: the AES-256-GCM key sealing TOTP secrets at rest. */
  encryptionKey: string
  /** Signs the session cookie; at least 32 characters. */
  sessionSecret: string
  /** Things to tell the operator at startup (generated development keys). */
  warnings: string[]
}

/** The environment cannot run the example: `server.ts` prints the message and exits. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

export const DEFAULT_PORT = 3000
const MIN_SESSION_SECRET = 32
const HOW_TO_KEY = 'generate one with: openssl rand -base64 32'

/**
 * Reads PORT, REDIS_URL or REDIS_CLUSTER_NODES, TOTP_ENCRYPTION_KEY and SESSION_SECRET.
 * With Redis, the key and the secret are required: every instance must seal secrets
 * and sign cookies alike. Without Redis, missing ones are generated for this process.
 */
export function configFromEnv (env: Record<string, string | undefined>): ExampleConfig {
  const warnings: string[] = []
  const port = Number(env.PORT ?? DEFAULT_PORT)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`PORT must be a port number, got "${env.PORT}"`)
  }

  let redis: ExampleConfig['redis'] = null
  if (env.REDIS_URL && env.REDIS_CLUSTER_NODES) throw new ConfigError('set REDIS_URL or REDIS_CLUSTER_NODES, not both')
  if (env.REDIS_URL) redis = { url: env.REDIS_URL }
  if (env.REDIS_CLUSTER_NODES) redis = { clusterNodes: env.REDIS_CLUSTER_NODES.split(',').map(clusterNode) }

  let encryptionKey = env.TOTP_ENCRYPTION_KEY
  if (encryptionKey) {
    if (!/^[A-Za-z0-9+/]{43}=$/.test(encryptionKey)) {
      throw new ConfigError(`TOTP_ENCRYPTION_KEY must be the base64 of 32 bytes; ${HOW_TO_KEY}`)
    }
  } else if (redis !== null) {
    throw new ConfigError(
      `TOTP_ENCRYPTION_KEY is required with Redis (secrets are sealed with it at rest); ${HOW_TO_KEY}`
    )
  } else {
    encryptionKey = randomBytes(32).toString('base64')
    warnings.push(
      'TOTP_ENCRYPTION_KEY is not set: a development key was generated for this process; enrolments are lost on restart'
    )
  }

  let sessionSecret = env.SESSION_SECRET
  if (sessionSecret) {
    if (sessionSecret.length < MIN_SESSION_SECRET) {
      throw new ConfigError(`SESSION_SECRET must be at least ${MIN_SESSION_SECRET} characters`)
    }
  } else if (redis !== null) {
    throw new ConfigError(
      `SESSION_SECRET (at least ${MIN_SESSION_SECRET} characters) is required with Redis, ` +
      'so that every instance accepts the others\' cookies'
    )
  } else {
    sessionSecret = randomBytes(32).toString('base64url')
    warnings.push(
      'SESSION_SECRET is not set: a development secret was generated for this process; sessions end on restart'
    )
  }

  return { host: '127.0.0.1', port, redis, encryptionKey, sessionSecret, warnings }
}

function clusterNode (entry: string): { host: string; port: number } {
  const at = entry.trim().lastIndexOf(':')
  const host = entry.trim().slice(0, at)
  const port = Number(entry.trim().slice(at + 1))
  if (at <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new ConfigError(`REDIS_CLUSTER_NODES must look like host:port,host:port, got "${entry}"`)
  }
  return { host, port }
}

/** The one startup line that says where state lives (credentials in the URL are masked). */
export function describeStore (redis: ExampleConfig['redis']): string {
  if (redis === null) {
    return 'store: in-memory (TOTP state and sessions live in this process only; set REDIS_URL to share them)'
  }
  if ('clusterNodes' in redis) {
    const nodes = redis.clusterNodes.map((n) => `${n.host}:${n.port}`).join(',')
    return `store: Redis Cluster ${nodes} (TOTP state and sessions)`
  }
  let where = redis.url
  try {
    const url = new URL(redis.url)
    if (url.password) url.password = '***'
    where = url.toString()
  } catch {}
  return `store: Redis ${where} (TOTP state and sessions)`
}
