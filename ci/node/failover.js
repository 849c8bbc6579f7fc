'use strict'
// An idempotent acks=all kafkajs producer for the cluster failover tests
// (ci/compat/test_cluster.py): sends `count` numbered records, `batch` per send, each send to
// one partition in turn, and appends [value, partition, offset] for every acknowledged record
// to `outputPath` as soon as it is acknowledged, so the test can see the traffic flowing and
// kill a leader in the middle of it.
//
// Options: { brokers, topic, partitions, count, batch, outputPath }.
//
// One partition per send on purpose: kafkajs 2.2.4 remembers which brokers answered a send
// and, on a retry, skips them; a partition whose leadership moved onto a broker that had
// already answered for another partition would be left out of the result (a kafkajs bug, not
// a broker's), which a one-partition send cannot meet.

const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')
const { main } = require('./common')

main(async options => {
  const kafka = new Kafka({
    clientId: 'spate-ci-kafkajs-failover',
    brokers: options.brokers,
    logLevel: logLevel.WARN,
    connectionTimeout: 3000,
    // A frozen leader must not hold a request for the default 30 s.
    requestTimeout: 5000,
    // Enough retries to ride a fencing (the cluster's session timeout is under 2 s) and an
    // election: up to about a minute of retrying before the send fails the script.
    retry: { retries: 30, initialRetryTime: 200, maxRetryTime: 2000 },
  })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const batch = options.batch || 10
  let sent = 0
  let send = 0
  while (sent < options.count) {
    const partition = send % options.partitions
    const messages = []
    for (let i = 0; i < batch && sent < options.count; i++, sent++) {
      messages.push({ value: `record-${String(sent).padStart(6, '0')}`, partition })
    }
    const results = await producer.send({ topic: options.topic, messages, acks: -1 })
    const result = results.find(entry => entry.partition === partition)
    if (!result || result.errorCode !== 0) {
      throw new Error(`no clean produce result for partition ${partition}: ${JSON.stringify(results)}`)
    }
    const base = BigInt(result.baseOffset)
    const lines = messages.map((message, index) =>
      JSON.stringify([message.value, partition, Number(base + BigInt(index))]) + '\n')
    fs.appendFileSync(options.outputPath, lines.join(''))
    send++
  }
  await producer.disconnect()
  return { produced: sent }
})
