#!/usr/bin/env node
// fastify-totp-gate-migrate: moves a deployment's TOTP keys to a new key layout (keyPrefix,
// settingsShards). Stop every instance first; start them with the new options afterwards.
import { parseArgs } from 'node:util'
import { Cluster, Redis } from 'ioredis'
import { migrateLayout } from '../stores/layout.js'

const { values } = parseArgs({
  options: {
    redis: { type: 'string' },
    cluster: { type: 'string' },
    prefix: { type: 'string', default: 'totp:' },
    'to-prefix': { type: 'string' },
    'from-shards': { type: 'string', default: '64' },
    'to-shards': { type: 'string' }
  }
})
const usage = 'usage: fastify-totp-gate-migrate (--redis redis://host:6379 | --cluster host:port,…) [--prefix totp:] ' +
  '[--to-prefix P] --from-shards N [--to-shards M]'
const shards = (v: string | undefined, name: string): number => {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 1 || n > 16384) throw new Error(`${name} must be an integer 1..16384\n${usage}`)
  return n
}
const from = { keyPrefix: values.prefix!, settingsShards: shards(values['from-shards'], '--from-shards') }
const to = {
  keyPrefix: values['to-prefix'] ?? from.keyPrefix,
  settingsShards: values['to-shards'] === undefined ? from.settingsShards : shards(values['to-shards'], '--to-shards')
}
if ((values.redis === undefined) === (values.cluster === undefined)) throw new Error(usage)
const client = values.cluster !== undefined
  ? new Cluster(values.cluster.split(',').map((n) => ({ host: n.split(':')[0], port: Number(n.split(':')[1]) })))
  : new Redis(values.redis!)
try {
  const { moved } = await migrateLayout(client, from, to)
  console.log(`moved ${moved} keys from ${JSON.stringify(from)} to ${JSON.stringify(to)}`)
} finally {
  client.disconnect()
}
