// `npm start`: the example app on 127.0.0.1:$PORT (default 3000).
import { Cluster, Redis } from 'ioredis'
import { build } from './app.js'
import { ConfigError, configFromEnv, describeStore, type ExampleConfig } from './config.js'

let config: ExampleConfig
try {
  config = configFromEnv(process.env)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  console.error(`fastify-totp-gate example: ${err.message}`)
  process.exit(1)
}

// lazyConnect: connect once the logger below can report connection errors
const redis = config.redis === null
  ? undefined
  : 'url' in config.redis
    ? new Redis(config.redis.url, { lazyConnect: true })
    : new Cluster(config.redis.clusterNodes, { lazyConnect: true })

const app = await build({
  redis, logger: true, encryptionKey: config.encryptionKey, sessionSecret: config.sessionSecret
})
// while Redis is away the plugin answers 503 and resumes by itself; the log says why
redis?.on('error', (err: Error) => app.log.error({ err }, 'redis error'))
redis?.connect().catch(() => {}) // reported through 'error' above; ioredis keeps retrying
for (const warning of config.warnings) app.log.warn(warning)
app.log.info(describeStore(config.redis))

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    app.close().then(() => redis?.quit()).then(() => process.exit(0), () => process.exit(1))
  })
}

await app.listen({ host: config.host, port: config.port })
