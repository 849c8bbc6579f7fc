'use strict'
// One kafkajs consumer-group member, run as a subprocess by ci/compat/test_groups.py: the
// kafkajs twin of ci/compat/group_member.py, with the same options and the same JSON-lines
// events on stdout (see that file). kafkajs has no static membership (no group.instance.id),
// no revoke callback and no generation in its events: "assigned" comes from GROUP_JOIN and
// "revoked" from REBALANCING (kafkajs's eager protocol gives everything up when it rejoins).
//
// Options: { brokers, group, topic, client_id, session_timeout_ms, heartbeat_interval_ms,
//   max_poll_interval_ms (the rebalance timeout), commit, max_records, uncommitted,
//   close_when_done }. stdin command: `close` disconnects (LeaveGroup) and exits 0.

const readline = require('readline')
const { client } = require('./common')

const SEQ_DIGITS = 8

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ ...fields, event, t: Date.now() / 1000 }) + '\n')
}

function seqOf (value) {
  const seq = parseInt(value ? value.slice(0, SEQ_DIGITS).toString() : '', 10)
  return Number.isNaN(seq) ? -1 : seq
}

async function run (options) {
  const kafka = client({ ...options, brokers: options.brokers })
  const consumer = kafka.consumer({
    groupId: options.group,
    sessionTimeout: options.session_timeout_ms || 6000,
    heartbeatInterval: options.heartbeat_interval_ms || 1000,
    rebalanceTimeout: options.max_poll_interval_ms || 20000,
    maxWaitTimeInMs: 100,
    retry: { retries: 10 },
  })
  const topic = options.topic
  const commit = options.commit !== false
  const maxRecords = options.max_records == null ? null : options.max_records
  const uncommitted = options.uncommitted || 0
  let processed = 0
  let done = false
  let current = []
  let closing = null

  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    current = [...(payload.memberAssignment[topic] || [])].sort((a, b) => a - b)
    emit('assigned', { partitions: current, member_id: payload.memberId, generation: null, leader: payload.isLeader })
  })
  consumer.on(consumer.events.REBALANCING, () => {
    emit('revoked', { partitions: current })
    current = []
  })
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    emit('consumer_error', { error: String(payload.error && payload.error.stack), restart: payload.restart })
  })

  async function close () {
    if (!closing) {
      closing = (async () => {
        await consumer.disconnect()
        emit('closed')
        process.exit(0)
      })()
    }
    return closing
  }

  readline.createInterface({ input: process.stdin })
    .on('line', line => { if (line.trim() === 'close') close() })
    .on('close', () => close())

  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  emit('started')
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      const items = []
      let commitOffset = null
      let finished = false
      for (const message of batch.messages) {
        if (done || !isRunning() || isStale()) break
        const offset = Number(message.offset)
        items.push([batch.partition, offset, seqOf(message.value)])
        processed += 1
        resolveOffset(message.offset)
        if (commit && (maxRecords === null || processed <= maxRecords)) commitOffset = offset + 1
        if (maxRecords !== null && processed >= maxRecords + uncommitted) {
          done = true
          finished = true
        }
      }
      if (items.length) emit('records', { items })
      if (commitOffset !== null) {
        const offsets = { [batch.partition]: commitOffset }
        try {
          await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(commitOffset) }])
          emit('committed', { offsets })
        } catch (error) {
          emit('commit_error', { error: String(error), offsets })
        }
      }
      if (finished) {
        emit('done')
        if (options.close_when_done) close()
      }
      await heartbeat()
    },
  })
}

run(JSON.parse(process.argv[2])).catch(error => {
  emit('crash', { error: String(error && error.stack) })
  process.stderr.write(`group.js failed: ${error && error.stack}\n`)
  process.exit(1)
})
