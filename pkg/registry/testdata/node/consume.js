// Reads a topic with stock kafkajs and decodes each key and value through the Confluent Schema
// Registry API with @kafkajs/confluent-schema-registry; prints one JSON object a line.
// Usage: node consume.js <broker> <registry-url> <topic> <count>
'use strict';
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry');
const fzstd = require('fzstd');

// kafkajs ships gzip only and takes other codecs as plugins; fzstd is a pure-JS zstd decoder.
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  compress: async () => { throw new Error('zstd compression is not needed to consume'); },
  decompress: async (buf) => Buffer.from(fzstd.decompress(buf)),
});

async function main() {
  const [broker, url, topic, countArg] = process.argv.slice(2);
  const want = Number(countArg);
  const kafka = new Kafka({ clientId: 'node-check', brokers: [broker], logLevel: logLevel.NOTHING });
  const registry = new SchemaRegistry({ host: url });
  const consumer = kafka.consumer({ groupId: 'node-check-' + process.pid });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  await new Promise((resolve, reject) => {
    consumer.run({
      eachMessage: async ({ message }) => {
        try {
          const key = message.key ? await registry.decode(message.key) : null;
          const value = message.value ? await registry.decode(message.value) : null;
          process.stdout.write(JSON.stringify({ offset: message.offset, key, value }) + '\n');
          if (++seen >= want) resolve();
        } catch (err) {
          reject(err);
        }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
}

main().then(() => process.exit(0), (err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
