'use strict'
// Shared setup for the kafkajs scripts driven by ci/compat/test_kafkajs.py.
// Each script takes one JSON argument and writes its result as one JSON document on stdout.
// kafkajs logs (warnings and errors only) go to stderr.

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs')

// snappy (pure JavaScript) is a plain dependency. lz4 is optional because its native build can
// fail on a machine without a compiler; the test skips lz4 when it cannot be loaded.
// @kafkajs/zstd is not used: its native dependency (cppzst) fails to build with Node 20.
const SnappyCodec = require('kafkajs-snappy')
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
let lz4Available = false
try {
  const LZ4Codec = require('kafkajs-lz4')
  CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
  lz4Available = true
} catch (error) {
  process.stderr.write(`kafkajs-lz4 unavailable: ${error.message}\n`)
}

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
}

function parseArgs () {
  if (process.argv.length !== 3) {
    throw new Error(`usage: node ${process.argv[1]} '<json options>'`)
  }
  return JSON.parse(process.argv[2])
}

// options.ssl = { ca: PEM path } turns TLS on; options.sasl = { mechanism: 'plain' |
// 'scram-sha-256' | 'scram-sha-512', username, password } authenticates.
function client (options) {
  return new Kafka({
    clientId: 'spate-ci-kafkajs',
    brokers: options.brokers,
    ssl: options.ssl ? { ca: [require('fs').readFileSync(options.ssl.ca, 'utf8')] } : undefined,
    sasl: options.sasl,
    logLevel: logLevel.WARN,
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 5 },
  })
}

async function main (run) {
  try {
    const result = await run(parseArgs())
    process.stdout.write(JSON.stringify(result) + '\n')
    process.exit(0)
  } catch (error) {
    process.stderr.write(`kafkajs script failed: ${error.stack || error}\n`)
    if (error.errors) process.stderr.write(`nested errors: ${JSON.stringify(error.errors)}\n`)
    process.exit(1)
  }
}

module.exports = { client, main, CODECS, lz4Available }
