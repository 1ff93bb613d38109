import t from 'tap'
import { Redis } from 'ioredis'
import { startRedis } from './support/redis-servers.js'
import { instanceScenarios } from './support/instances.js'

// Three Fastify instances on one standalone Redis (a private server, stopped at the end).
// The same scenarios run on a Redis Cluster in cluster.test.ts.
const server = await startRedis()
t.teardown(() => server.stop())

instanceScenarios(t, 'standalone', () => new Redis(server.url, { maxRetriesPerRequest: 1 }))
