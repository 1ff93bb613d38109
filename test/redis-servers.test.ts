import { once } from 'node:events'
import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { freePort, startRedis, startRedisCluster } from './support/redis-servers.js'

t.test('freePort returns a bindable port', async (t) => {
  const port = await freePort()
  t.ok(port > 0 && port < 65536, 'a port number')
  t.not(port, 6379, 'not the shared server')
})

t.test('standalone server: set/get, stop, restart, freeze', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  t.equal(server.url, `redis://127.0.0.1:${server.port}`)

  const client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => 50 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())

  t.equal(await client.set('k', 'v'), 'OK')
  t.equal(await client.get('k'), 'v')

  await server.stop()
  await t.rejects(client.get('k'), 'a client sees an error while the server is down')

  await server.start()
  if (client.status !== 'ready') await once(client, 'ready')
  t.equal(await client.ping(), 'PONG', 'the client reconnects after the restart')
  t.equal(await client.get('k'), null, 'nothing is persisted across a restart')

  await server.freeze()
  const hung = await Promise.race([client.ping(), new Promise((resolve) => setTimeout(resolve, 300, 'timeout'))])
  t.equal(hung, 'timeout', 'a frozen server answers nothing')
  await server.thaw()
  t.equal(await client.ping(), 'PONG', 'a thawed server answers again')
})

t.test('a second standalone server gets its own port', async (t) => {
  const a = await startRedis()
  t.teardown(() => a.stop())
  const port = await freePort()
  const b = await startRedis({ port })
  t.teardown(() => b.stop())
  t.equal(b.port, port)
  t.not(a.port, b.port)
  await t.rejects(startRedis({ port }), /exited at start/, 'a taken port fails clearly')
})

t.test('3-master cluster: keys on every master, Lua with two keys in one slot', async (t) => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.stop())
  t.equal(cluster.nodes.length, 3)

  const client = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: 1 } })
  t.teardown(() => client.disconnect())

  const tags = Array.from({ length: 30 }, (_, i) => `{tag${i}}`)
  await Promise.all(tags.map((tag) => client.set(`${tag}:k`, tag)))
  t.same(await Promise.all(tags.map((tag) => client.get(`${tag}:k`))), tags)

  const masters = client.nodes('master')
  t.equal(masters.length, 3)
  const sizes = await Promise.all(masters.map((node) => node.dbsize()))
  t.ok(sizes.every((size) => size > 0), `every master holds keys (${sizes.join(', ')})`)

  const script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1] .. '!'); return redis.call('GET', KEYS[2])"
  t.equal(await client.eval(script, 2, '{user:1}:a', '{user:1}:b', 'x'), 'x!')
  t.equal(await client.get('{user:1}:a'), 'x')
  await t.rejects(client.eval(script, 2, '{user:1}:a', '{user:2}:b', 'x'), /CROSSSLOT/)
})

t.test('a cluster node can be stopped and started again', async (t) => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.stop())
  const [first] = cluster.nodes
  await cluster.stopNode(first.port)
  await cluster.startNode(first.port)
  const client = new Redis(first.port, '127.0.0.1')
  t.teardown(() => client.disconnect())
  const info = await client.cluster('INFO') as string
  t.match(info, /cluster_state:ok/)
})

t.test('a cluster needs 3 masters', async (t) => {
  await t.rejects(startRedisCluster({ masters: 2 }), /at least 3 masters/)
  await t.rejects(startRedisCluster({ replicasPerMaster: -1 }), /non-negative/)
})
