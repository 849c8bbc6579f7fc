'use strict'
// kafkajs transactions, driven by ci/compat/test_transactions.py: one transaction committed,
// one aborted (kafkajs sends each record at once, so the aborted records are in the log), and
// a zombie: a second producer with the same transactionalId fences the first, whose commit
// must then fail.
//
// Options: { brokers, topic, transactionalId, count }. Writes { zombieError }.

const { client, main } = require('./common')

main(async options => {
  const kafka = client(options)
  const producer = id => kafka.producer({
    transactionalId: id,
    idempotent: true,
    maxInFlightRequests: 1,
  })
  const messages = prefix => Array.from({ length: options.count }, (_, i) => ({
    key: String(i),
    value: `${prefix}-${i}`,
  }))

  const first = producer(options.transactionalId)
  await first.connect()
  let transaction = await first.transaction()
  await transaction.send({ topic: options.topic, messages: messages('kafkajs-committed') })
  await transaction.commit()
  transaction = await first.transaction()
  await transaction.send({ topic: options.topic, messages: messages('kafkajs-aborted') })
  await transaction.abort()

  // The zombie: its transaction is open when a successor with the same id starts.
  const zombie = await first.transaction()
  await zombie.send({ topic: options.topic, messages: messages('kafkajs-zombie') })
  const successor = producer(options.transactionalId)
  await successor.connect()
  // kafkajs asks for the transactional producer id at its first transaction: this fences
  // the zombie (and aborts its open transaction).
  transaction = await successor.transaction()
  let zombieError = null
  try {
    await zombie.send({ topic: options.topic, messages: messages('kafkajs-zombie-late') })
    await zombie.commit()
  } catch (error) {
    zombieError = error.type || error.name || String(error)
  }
  await transaction.send({ topic: options.topic, messages: messages('kafkajs-successor') })
  await transaction.commit()
  await successor.disconnect()
  await first.disconnect().catch(() => {})
  return { zombieError }
})
