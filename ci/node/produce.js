'use strict'
// Produce the records listed in a JSON-lines file ({key, value, headers}) with kafkajs and
// write, for every record, the (partition, offset) its produce response implies.
//
// Options: { brokers, topic, inputPath, outputPath, codec, idempotent, chunk }.
// kafkajs has no group-less consumer, so the Python side reads the records back with
// confluent-kafka assign().

const fs = require('fs')
const { Partitioners } = require('kafkajs')
const { client, main, CODECS, lz4Available } = require('./common')

main(async options => {
  if (!(options.codec in CODECS)) throw new Error(`unknown codec ${options.codec}`)
  if (options.codec === 'lz4' && !lz4Available) throw new Error('kafkajs-lz4 is not installed')
  const records = fs.readFileSync(options.inputPath, 'utf8').split('\n').filter(Boolean).map(JSON.parse)
  const kafka = client(options)

  // kafkajs's own partitioner is deterministic for keyed records, so asking it where each
  // record goes lets us turn each partition's base offset into per-record offsets.
  const admin = kafka.admin()
  await admin.connect()
  const metadata = await admin.fetchTopicMetadata({ topics: [options.topic] })
  await admin.disconnect()
  const partitionMetadata = metadata.topics[0].partitions
  const partitionOf = Partitioners.DefaultPartitioner()

  const producer = kafka.producer(options.idempotent
    ? { idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner }
    : { createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  const delivered = []
  const chunk = options.chunk || 2000
  for (let start = 0; start < records.length; start += chunk) {
    const messages = records.slice(start, start + chunk).map(record => ({
      key: record.key,
      value: record.value,
      headers: Object.fromEntries(record.headers),
    }))
    const results = await producer.send({
      topic: options.topic,
      messages,
      acks: -1,
      compression: CODECS[options.codec],
    })
    const baseOffsets = {}
    for (const result of results) {
      if (result.errorCode !== 0) throw new Error(`produce error ${JSON.stringify(result)}`)
      baseOffsets[result.partition] = BigInt(result.baseOffset)
    }
    const nextIndex = {}
    for (const message of messages) {
      const partition = partitionOf({ topic: options.topic, partitionMetadata, message })
      const index = nextIndex[partition] || 0n
      nextIndex[partition] = index + 1n
      if (!(partition in baseOffsets)) throw new Error(`no produce result for partition ${partition}`)
      delivered.push([message.value, partition, Number(baseOffsets[partition] + index)])
    }
  }
  await producer.disconnect()
  fs.writeFileSync(options.outputPath, delivered.map(entry => JSON.stringify(entry)).join('\n') + '\n')
  return { produced: delivered.length }
})
