'use strict'
// Run a list of kafkajs admin steps and report each result.
//
// Options: { brokers, steps: [ {op: 'create', topics: [[name, partitions], ...]},
//   {op: 'list'}, {op: 'metadata', topics: [...]}, {op: 'delete', topics: [...]},
//   {op: 'reassign', topics: [{topic, partitionAssignment: [{partition, replicas}]}]},
//   {op: 'listReassignments', topics: [{topic, partitions: [...]}] or null} ] }.

const { client, main } = require('./common')

main(async options => {
  const admin = client(options).admin()
  await admin.connect()
  const results = []
  try {
    for (const step of options.steps) {
      if (step.op === 'create') {
        results.push(await admin.createTopics({
          topics: step.topics.map(([topic, numPartitions]) => ({ topic, numPartitions, replicationFactor: 1 })),
          waitForLeaders: true,
          timeout: 15000,
        }))
      } else if (step.op === 'list') {
        results.push((await admin.listTopics()).sort())
      } else if (step.op === 'metadata') {
        const metadata = await admin.fetchTopicMetadata({ topics: step.topics })
        results.push(metadata.topics.map(topic => ({
          name: topic.name,
          partitions: topic.partitions.map(p => ({ id: p.partitionId, leader: p.leader, error: p.partitionErrorCode })),
        })))
      } else if (step.op === 'reassign') {
        await admin.alterPartitionReassignments({ topics: step.topics, timeout: 15000 })
        results.push(true)
      } else if (step.op === 'listReassignments') {
        results.push(await admin.listPartitionReassignments({ topics: step.topics || null, timeout: 15000 }))
      } else if (step.op === 'delete') {
        await admin.deleteTopics({ topics: step.topics, timeout: 15000 })
        results.push(true)
      } else {
        throw new Error(`unknown admin step ${JSON.stringify(step)}`)
      }
    }
  } finally {
    await admin.disconnect()
  }
  return results
})
