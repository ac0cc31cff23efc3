import Features
import FeatureStore
import Foundation
import Streaming
import Testing
import TestSupport

@Suite("streamrec status", .serialized, .timeLimit(.minutes(2)))
struct StatusCommandTests {
    @Test("status --json reports progress, lag, shards, dead letters, lost rows, dictionary and workers")
    func statusJSON() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("st", partitions: 2)
        try produce(syntheticRows(30), topic: "st", bootstrap: cluster.bootstrapServers, partitions: 2)
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        let store = FeatureStore(redis: conn)
        try store.loadSnapshot(statsFor(syntheticRows(50)), source: "x.stats")
        let x = FeatureBatchCodecTests_sample(rows: 4)
        _ = try store.commit(CommitUnit(topic: "st", partition: 1, firstOffset: 0, lastOffset: 4, shard: 1,
                                        encodedBatch: FeatureBatchCodec.encode(x.batch, source: x.source), rows: 4,
                                        deadLetters: [DeadLetter(raw: [1], offset: 4, reason: "bad_label", detail: "d")], lostRows: 0))
        _ = try store.commit(CommitUnit(topic: "st", partition: 0, firstOffset: 0, lastOffset: 9, shard: 0, encodedBatch: nil, rows: 0, lostRows: 10))
        try store.heartbeat(worker: "w-a", info: ["shard": 0, "rows": 4])
        let bin = try #require(streamrecBinary())
        let r = try runProcess(bin, ["status", "--redis", "127.0.0.1:\(redis.port)", "--bootstrap", cluster.bootstrapServers,
                                     "--topic", "st", "--json"], timeout: .seconds(30))
        #expect(r.status == 0, "\(r.stderr)")
        let st = try JSONDecoder().decode(FeatureStoreStatus.self, from: Data(r.stdout.utf8))
        #expect(st.partitions.map(\.partition) == [0, 1])
        #expect(st.partitions[1].progress == 5 && st.partitions[1].highWatermark == 15 && st.partitions[1].lag == 10)
        #expect(st.partitions[0].lostUpstream == 10)
        #expect(st.shards.first { $0.shard == 1 }?.rows == 4)
        #expect(st.shards.first { $0.shard == 1 }?.pending == 1)
        #expect(st.deadLetters == ["bad_label": 1])
        #expect(st.dictionaryState == "ready" && st.onlineIds == 0)
        #expect(st.workers.map(\.id) == ["w-a"] && st.workers[0].heartbeatAgeSeconds < 30)
        // Text form mentions the essentials.
        let text = try runProcess(bin, ["status", "--redis", "127.0.0.1:\(redis.port)"], timeout: .seconds(30))
        #expect(text.status == 0 && text.stdout.contains("LOST UPSTREAM 10") && text.stdout.contains("bad_label 1"))
    }
}

func FeatureBatchCodecTests_sample(rows: Int) -> SourcedFeatureBatch {
    let f = CriteoSchema.fieldCount
    let ids = (0..<(rows * f)).map { Int32($0 % f) }
    let weights = (0..<(rows * f)).map { $0 % f < 13 ? Float(0.5) : 1 }
    return SourcedFeatureBatch(batch: FeatureBatch(fieldCount: f, ids: ids, weights: weights, labels: Array(repeating: 1, count: rows)),
                               source: FeatureBatchSource(topic: "st", partition: 1, firstOffset: 0, lastOffset: 4, rejectedRows: 1))
}

@Suite("featurize/status --help")
struct FeaturizeHelpTests {
    @Test("help names every option", arguments: [
        (["featurize", "--help"], ["--shard", "--shards", "--topic", "--bootstrap", "--redis", "--stats", "-X", "--batch-size",
                                   "--linger-ms", "--max-pending", "--feature-shards", "--config", "--raw", "SIGTERM"]),
        (["status", "--help"], ["--redis", "--bootstrap", "--topic", "--json", "lag"]),
    ])
    func help(_ args: [String], _ needles: [String]) throws {
        let r = try runProcess(try #require(streamrecBinary()), args, timeout: .seconds(30))
        #expect(r.status == 0)
        for n in needles { #expect(r.stdout.contains(n), "`streamrec \(args.joined(separator: " "))` lacks \(n)") }
    }
}
