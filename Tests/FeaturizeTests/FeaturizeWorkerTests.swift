import Features
import FeatureStore
import Featurize
import Foundation
import Streaming
import Testing
import TestSupport

/// The expected encoding of one row, computed independently of the parser and encoder:
/// String splitting, Float parsing, the documented transform and the snapshot's ids.
func independentEncoding(_ line: [UInt8], stats: FeatureStats) -> (ids: [Int32], weights: [Float], label: Float, cats: [String]) {
    let parts = String(decoding: line, as: UTF8.self).split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
    precondition(parts.count == 40)
    var ids: [Int32] = [], weights: [Float] = []
    for i in 0..<13 {
        if parts[1 + i].isEmpty { ids.append(13 + Int32(i)); weights.append(1); continue }
        let x = Double(parts[1 + i])!
        let t = Float((x < 0 ? -1 : 1) * Foundation.log1p(abs(x)))
        let lo = stats.denseMin[i], hi = stats.denseMax[i]
        ids.append(Int32(i))
        weights.append(hi > lo ? min(1, max(0, (t - lo) / (hi - lo))) : 0)
    }
    let cats = Array(parts[14..<40])
    for j in 0..<26 {
        ids.append(stats.id(field: j, category: cats[j]) ?? 26 + Int32(j))
        weights.append(1)
    }
    return (ids, weights, parts[0] == "1" ? 1 : 0, cats)
}

@Suite("featurize worker (Kafka: mock, some tests also noida-db; real Redis)", .serialized, .timeLimit(.minutes(5)))
struct FeaturizeWorkerTests {
    @Test("rows → batches, value by value against an independent computation (1 and 3 parse threads; mock and noida-db)",
          arguments: KafkaBrokerKind.allCases, [1, 3])
    func roundTrip(broker kind: KafkaBrokerKind, parseThreads: Int) throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try startBroker(kind, topics: ["rt": 3])
        defer { cluster.stop() }
        let rows = syntheticRows(1200, seed: 7)
        let stats = statsFor(Array(rows.prefix(600)), minFrequency: 2)
        try produce(rows, topic: "rt", bootstrap: cluster.bootstrapServers, partitions: 3)
        let w = WorkerThread(options: options(topic: "rt", bootstrap: cluster.bootstrapServers, redis: "127.0.0.1:\(redis.port)",
                                              batchSize: 128, featureShards: 2, parseThreads: parseThreads), stats: stats)
        let summary = try w.join()
        #expect(summary.rows == 1200 && summary.deadLetters == 0)
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        let store = FeatureStore(redis: conn)
        let entries = try allBatches(redis: "127.0.0.1:\(redis.port)", featureShards: 2)
        // Per partition, rows in offset order.
        var byPartition: [Int32: [(Int64, RowsEntry)]] = [:]
        for e in entries {
            byPartition[e.batch.source.partition, default: []].append((e.batch.source.firstOffset, e))
        }
        var checked = 0
        var online = 0
        for p in Int32(0)..<3 {
            let batches = (byPartition[p] ?? []).sorted { $0.0 < $1.0 }.map(\.1.batch)
            #expect(coverageProblem(batches.map { ($0.source.firstOffset, $0.source.lastOffset) }, end: 400) == nil)
            let produced = rows.enumerated().filter { $0.offset % 3 == Int(p) }.map(\.element)
            var k = 0
            for b in batches {
                #expect(b.source.topic == "rt" && b.source.rejectedRows == 0 && b.source.producedAtMs > 0)
                for r in 0..<b.batch.count {
                    let want = independentEncoding(produced[k], stats: stats)
                    #expect(b.batch.labels[r] == want.label)
                    for f in 0..<39 {
                        let got = b.batch.ids[r * 39 + f]
                        if f >= 13 && want.ids[f] == 26 + Int32(f - 13) && got != want.ids[f] {
                            // Unknown in the snapshot: OOV, or the id Redis assigned online.
                            let assigned = try conn.command(bytes: [Array("HGET".utf8), Array("sr:dict:\(f - 13)".utf8), Array(want.cats[f - 13].utf8)]).integer
                            #expect(assigned == Int64(got), "row \(k) of partition \(p), field \(f)")
                            online += 1
                        } else {
                            #expect(got == want.ids[f], "row \(k) of partition \(p), field \(f)")
                        }
                        #expect(abs(b.batch.weights[r * 39 + f] - want.weights[f]) <= 1e-6, "row \(k) field \(f)")
                    }
                    k += 1; checked += 1
                }
            }
            #expect(k == produced.count)
            #expect(try store.readProgress(topic: "rt", partition: p) == 400)
        }
        #expect(checked == 1200)
        _ = online  // how many rows used an id assigned online depends on timing (async commits)
        // Partition p → shard p mod 2.
        let reader = FeatureStreamReader(redis: conn)
        for s in 0..<2 { for e in try reader.range(shard: s) { #expect(Int(e.source.partition) % 2 == s) } }
    }

    @Test("two workers (K = 2) share a topic: every partition covered exactly once")
    func twoWorkers() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 2)
        defer { cluster.destroy() }
        try cluster.createTopic("two", partitions: 4)
        let rows = syntheticRows(2000, seed: 3)
        let stats = statsFor(rows, minFrequency: 2)
        try produce(rows, topic: "two", bootstrap: cluster.bootstrapServers, partitions: 4)
        let addr = "127.0.0.1:\(redis.port)"
        let w0 = WorkerThread(options: options(shard: 0, shards: 2, topic: "two", bootstrap: cluster.bootstrapServers, redis: addr), stats: stats)
        let w1 = WorkerThread(options: options(shard: 1, shards: 2, topic: "two", bootstrap: cluster.bootstrapServers, redis: addr), stats: stats)
        let s0 = try w0.join(), s1 = try w1.join()
        #expect(s0.partitions == [0, 2] && s1.partitions == [1, 3])
        #expect(s0.rows + s1.rows == 2000)
        let entries = try allBatches(redis: addr, featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == 2000)
        for p in Int32(0)..<4 {
            let ranges = entries.filter { $0.batch.source.partition == p }.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }
            #expect(coverageProblem(ranges, end: 500) == nil, "partition \(p)")
        }
    }

    @Test("dictionary growth is seen identically by two workers")
    func growthAcrossWorkers() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("grow", partitions: 2)
        let base = syntheticRows(200, seed: 11)
        let stats = statsFor(base, minFrequency: 2)
        func withNewCategory(_ row: [UInt8]) -> [UInt8] {
            var parts = row.split(separator: 0x09, omittingEmptySubsequences: false).map(Array.init)
            parts[1 + 13 + 5] = Array("NEWCAT".utf8)
            return Array(parts.joined(separator: [0x09]))
        }
        #expect(stats.id(field: 5, category: "NEWCAT") == nil)
        let addr = "127.0.0.1:\(redis.port)"
        let w0 = WorkerThread(options: options(shard: 0, shards: 2, topic: "grow", bootstrap: cluster.bootstrapServers, redis: addr, batchSize: 16, untilIdle: .seconds(4)), stats: stats)
        let w1 = WorkerThread(options: options(shard: 1, shards: 2, topic: "grow", bootstrap: cluster.bootstrapServers, redis: addr, batchSize: 16, untilIdle: .seconds(4)), stats: stats)
        // Phase 1: NEWCAT once in each partition (count 1 per worker; threshold 2 reached together).
        let phase1 = Array(base.prefix(40)) + [withNewCategory(base[40]), withNewCategory(base[41])]
        try produce(phase1, topic: "grow", bootstrap: cluster.bootstrapServers, partitions: 2)
        let conn = try RedisConnection(address: addr)
        var assigned: Int64? = nil
        let deadline = ContinuousClock.now + .seconds(20)
        while assigned == nil && ContinuousClock.now < deadline {
            assigned = try conn.command(["HGET", "sr:dict:5", "NEWCAT"]).integer
            Thread.sleep(forTimeInterval: 0.05)
        }
        let id = try #require(assigned)
        #expect(id == Int64(stats.nextId))
        Thread.sleep(forTimeInterval: 1.5)  // both caches tail sr:dict:log at least once per second
        // Phase 2: NEWCAT again in both partitions → both workers encode the new id.
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: cluster.bootstrapServers))
        try producer.produce(topic: "grow", partition: 0, key: nil, value: withNewCategory(base[50]))
        try producer.produce(topic: "grow", partition: 1, key: nil, value: withNewCategory(base[51]))
        try producer.flush(timeout: .seconds(10))
        try w0.join(); try w1.join()
        let entries = try allBatches(redis: addr, featureShards: 4)
        for p in Int32(0)..<2 {
            let last = try #require(entries.filter { $0.batch.source.partition == p }.max { $0.batch.source.lastOffset < $1.batch.source.lastOffset })
            let b = last.batch.batch
            #expect(b.ids[(b.count - 1) * 39 + 13 + 5] == Int32(id), "partition \(p) encodes NEWCAT with the shared id")
        }
    }

    @Test("malformed rows of every RejectReason → dead letters with reasons and counts, none in batches (mock and noida-db)",
          arguments: KafkaBrokerKind.allCases)
    func deadLetters(broker kind: KafkaBrokerKind) throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try startBroker(kind, topics: ["dl": 1])
        defer { cluster.stop() }
        let good = syntheticRows(60, seed: 5)
        let stats = statsFor(good)
        var fields = good[0].split(separator: 0x09, omittingEmptySubsequences: false).map(Array.init)
        func with(_ index: Int, _ value: String) -> [UInt8] {
            var f = fields; f[index] = Array(value.utf8); return Array(f.joined(separator: [0x09]))
        }
        let bad: [(RejectReason, [UInt8])] = [
            (.emptyLine, []), (.emptyLine, Array("\n".utf8)),
            (.lineTooLong, [UInt8](repeating: UInt8(ascii: "7"), count: 70_000)),
            (.invalidUTF8, good[1] + [0xFF, 0xFE]),
            (.embeddedNewline, Array(good[2].prefix(20)) + [0x0A] + Array(good[2].dropFirst(20))),
            (.wrongFieldCount, Array("1\t2\t3".utf8)),
            (.badLabel, with(0, "2")), (.badLabel, with(0, "")),
            (.nonNumericDense, with(3, "abc")), (.nonNumericDense, with(1, "nan")),
            (.denseOutOfRange, with(2, "1e39")),
        ]
        fields = []
        #expect(Set(bad.map(\.0)) == Set(RejectReason.criteo))
        var messages: [[UInt8]] = []
        var badOffsets: [Int64: RejectReason] = [:]
        var g = 0
        for (k, b) in bad.enumerated() {
            for _ in 0..<5 { messages.append(good[g]); g += 1 }
            badOffsets[Int64(messages.count)] = b.0
            messages.append(b.1)
            _ = k
        }
        messages += good[g...]
        try produce(messages, topic: "dl", bootstrap: cluster.bootstrapServers, partitions: 1)
        let addr = "127.0.0.1:\(redis.port)"
        let summary = try WorkerThread(options: options(topic: "dl", bootstrap: cluster.bootstrapServers, redis: addr, batchSize: 7), stats: stats).join()
        #expect(summary.rows == 60 && summary.deadLetters == Int64(bad.count))
        let store = FeatureStore(redis: try RedisConnection(address: addr))
        var expectedCounts: [String: String] = [:]
        for b in bad { expectedCounts[b.0.rawValue] = String(Int(expectedCounts[b.0.rawValue] ?? "0")! + 1) }
        #expect(try store.hash("sr:deadletter:count") == expectedCounts)
        let dl = try store.redis.command(["XRANGE", "sr:deadletter", "-", "+"]).elements ?? []
        #expect(dl.count == bad.count)
        for entry in dl {
            var f: [String: RedisReply] = [:]
            let kv = entry.elements![1].elements!
            for i in stride(from: 0, to: kv.count, by: 2) { f[kv[i].text!] = kv[i + 1] }
            let offset = Int64(f["offset"]!.text!)!
            #expect(badOffsets[offset]?.rawValue == f["reason"]?.text, "offset \(offset)")
            // Raw bytes are kept up to 64 KiB (longer rows truncated, said in the detail).
            let sameRaw = f["raw"]?.bytes == Array(messages[Int(offset)].prefix(FeatureStore.deadLetterMaxRawBytes))
            #expect(sameRaw, "raw bytes of offset \(offset)")
            #expect(f["topic"]?.text == "dl" && f["partition"]?.text == "0" && f["worker"]?.text == "test-0")
        }
        let entries = try allBatches(redis: addr, featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == 60)
        #expect(entries.reduce(0) { $0 + $1.batch.source.rejectedRows } == bad.count)
        #expect(coverageProblem(entries.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }, end: Int64(messages.count)) == nil)
        // Every label in the batches is 0/1 and every row's ids are in range: nothing malformed got in.
        for e in entries { #expect(e.batch.batch.labels.allSatisfy { $0 == 0 || $0 == 1 }) }
    }

    @Test("fuzz: random bytes through the worker never crash it; every message is a row or a dead letter")
    func fuzz() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("fuzz", partitions: 2)
        let good = syntheticRows(300, seed: 9)
        let stats = statsFor(good)
        var rng = Xoshiro256(seed: 42)
        var messages: [[UInt8]] = []
        let alphabet: [UInt8] = Array("0123456789\t\n\r-+.eE abcxyz".utf8) + [0x00, 0x80, 0xC3, 0xA9, 0xFF, 0xED, 0xA0, 0xF4, 0x90]
        for i in 0..<2000 {
            switch i % 3 {
            case 0:  // random bytes
                let n = Int(rng.next() % 300)
                messages.append((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            case 1:  // random from a Criteo-ish alphabet
                let n = Int(rng.next() % 400)
                messages.append((0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
            default: // a valid row with a few mutated bytes
                var r = good[Int(rng.next() % UInt64(good.count))]
                for _ in 0..<Int(rng.next() % 4) where !r.isEmpty { r[Int(rng.next() % UInt64(r.count))] = alphabet[Int(rng.next() % UInt64(alphabet.count))] }
                messages.append(r)
            }
        }
        try produce(messages, topic: "fuzz", bootstrap: cluster.bootstrapServers, partitions: 2)
        let addr = "127.0.0.1:\(redis.port)"
        let summary = try WorkerThread(options: options(topic: "fuzz", bootstrap: cluster.bootstrapServers, redis: addr, batchSize: 64), stats: stats).join()
        #expect(summary.rows + summary.deadLetters == 2000)
        // The worker's verdicts match the parser's.
        var row = CriteoRow()
        let valid = messages.filter { (try? CriteoParser().parse(bytes: $0, into: &row)) != nil }.count
        #expect(summary.rows == Int64(valid))
        let entries = try allBatches(redis: addr, featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == valid)
    }

    @Test("Redis restarted mid-stream (AOF): the worker waits, resumes, and loses nothing")
    func redisRestart() throws {
        let redis = try PersistentRedisServer()
        defer { redis.destroy() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("rr", partitions: 2)
        let rows = syntheticRows(4000, seed: 13)
        let stats = statsFor(rows)
        try produce(Array(rows.prefix(2000)), topic: "rr", bootstrap: cluster.bootstrapServers, partitions: 2)
        let w = WorkerThread(options: options(topic: "rr", bootstrap: cluster.bootstrapServers, redis: redis.address, batchSize: 50, untilIdle: .seconds(4)), stats: stats)
        let conn = try RedisConnection(address: redis.address)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let rows = (try? conn.pipeline((0..<4).map { ["GET", "sr:rows:\($0)"] }).reduce(Int64(0)) { $0 + ($1.integer ?? 0) }) ?? 0
            if rows > 200 { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        redis.stop()
        try produce(Array(rows.suffix(2000)), topic: "rr", bootstrap: cluster.bootstrapServers, partitions: 2)
        #expect(poll(for: 20) { w.log.contains { $0.contains("Redis unavailable") } }, "the worker noticed the outage")
        try redis.start()
        let summary = try w.join()
        #expect(w.log.contains { $0.contains("Redis unavailable") })
        #expect(w.log.contains { $0.contains("is back") })
        let entries = try allBatches(redis: redis.address, featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == 4000)
        for p in Int32(0)..<2 {
            let ranges = entries.filter { $0.batch.source.partition == p }.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }
            #expect(coverageProblem(ranges, end: 2000) == nil, "partition \(p)")
        }
        _ = summary
    }

    @Test("Kafka broker down mid-stream: the worker keeps going, reconnects, and loses nothing")
    func kafkaOutage() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("ko", partitions: 2)
        let rows = syntheticRows(3000, seed: 17)
        let stats = statsFor(rows)
        try produce(Array(rows.prefix(1500)), topic: "ko", bootstrap: cluster.bootstrapServers, partitions: 2)
        var o = options(topic: "ko", bootstrap: cluster.bootstrapServers, redis: "127.0.0.1:\(redis.port)", batchSize: 50, untilIdle: .seconds(8))
        // librdkafka backs reconnects off up to 10 s by default; keep the test's wait short.
        o.kafka["reconnect.backoff.max.ms"] = "500"
        let w = WorkerThread(options: o, stats: stats)
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        func committedRows() -> Int64 {
            (try? conn.pipeline((0..<4).map { ["GET", "sr:rows:\($0)"] }).reduce(Int64(0)) { $0 + ($1.integer ?? 0) }) ?? 0
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline && committedRows() < 1500 { Thread.sleep(forTimeInterval: 0.01) }
        #expect(committedRows() == 1500)
        try cluster.setBroker(1, up: false)
        // Nothing new while the broker is down (3 s of it), and the worker is still running.
        #expect(!poll(for: 3) { committedRows() != 1500 })
        try cluster.setBroker(1, up: true)
        try produce(Array(rows.suffix(1500)), topic: "ko", bootstrap: cluster.bootstrapServers, partitions: 2)
        let summary = try w.join()
        // librdkafka reports the outage late and aggregated, so only its mention is certain.
        #expect(w.log.contains { $0.contains("Kafka unavailable") })
        #expect(summary.rows == 3000 && summary.lostUpstream == 0)
        let entries = try allBatches(redis: "127.0.0.1:\(redis.port)", featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == 3000)
        for p in Int32(0)..<2 {
            let ranges = entries.filter { $0.batch.source.partition == p }.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }
            #expect(coverageProblem(ranges, end: 1500) == nil, "partition \(p)")
        }
    }
}
