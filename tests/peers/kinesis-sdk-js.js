// The AWS SDK for JavaScript v3 against a Kinesis endpoint: put records, read every shard back.
// Usage: node kinesis-sdk-js.js ENDPOINT STREAM COUNT; prints one JSON object on stdout.
"use strict";
const {
  KinesisClient, CreateStreamCommand, PutRecordCommand, PutRecordsCommand, ListShardsCommand,
  GetShardIteratorCommand, GetRecordsCommand, DescribeStreamSummaryCommand,
} = require("@aws-sdk/client-kinesis");

async function main() {
  const [endpoint, stream, countText] = process.argv.slice(2);
  const count = Number(countText);
  const client = new KinesisClient({ endpoint, region: "us-east-1", maxAttempts: 1 });
  await client.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 2 }));
  const enc = new TextEncoder();
  const single = await client.send(new PutRecordCommand({
    StreamName: stream, PartitionKey: "js-0", Data: enc.encode("js-record-0"),
  }));
  const entries = [];
  for (let i = 1; i < count; i++) {
    entries.push({ PartitionKey: `js-${i}`, Data: enc.encode(`js-record-${i}`) });
  }
  const batch = await client.send(new PutRecordsCommand({ StreamName: stream, Records: entries }));
  const summary = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
  const shards = (await client.send(new ListShardsCommand({ StreamName: stream }))).Shards;
  const read = {};
  const dec = new TextDecoder();
  for (const shard of shards) {
    let it = (await client.send(new GetShardIteratorCommand({
      StreamName: stream, ShardId: shard.ShardId, ShardIteratorType: "TRIM_HORIZON",
    }))).ShardIterator;
    read[shard.ShardId] = [];
    for (;;) {
      const page = await client.send(new GetRecordsCommand({ ShardIterator: it, Limit: 1000 }));
      for (const r of page.Records) read[shard.ShardId].push([r.SequenceNumber, dec.decode(r.Data)]);
      it = page.NextShardIterator;
      if (page.Records.length === 0) break;
    }
  }
  console.log(JSON.stringify({
    single: single.SequenceNumber, failed: batch.FailedRecordCount,
    openShards: summary.StreamDescriptionSummary.OpenShardCount, read,
  }));
}

main().catch((err) => { console.error(err); process.exit(1); });
