import Features
import FeatureStore
import Foundation
import Streaming
import Synchronization
import Testing
import TestSupport

/// Produces rows round-robin over the partitions at a steady pace on its own thread until
/// stopped (or the rows run out), counting what each partition received.
final class PacedProducer: @unchecked Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var counts: [Int64]
    private var failure: Error?

    init(rows: [[UInt8]], topic: String, bootstrap: String, partitions: Int, rowsPerTick: Int = 100, tick: Duration = .milliseconds(30)) throws {
        counts = Array(repeating: 0, count: partitions)
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: bootstrap, ["linger.ms": "5"]))
        let thread = Thread { [self] in
            do {
                var i = 0
                while i < rows.count && !stopFlag.load(ordering: .relaxed) {
                    for _ in 0..<rowsPerTick where i < rows.count {
                        try producer.produce(topic: topic, partition: Int32(i % partitions), key: nil, value: rows[i])
                        lock.withLock { counts[i % partitions] += 1 }
                        i += 1
                    }
                    _ = producer.poll()
                    Thread.sleep(forTimeInterval: Double(tick.components.attoseconds) / 1e18 + Double(tick.components.seconds))
                }
                try producer.flush(timeout: .seconds(30))
                if producer.deliveryStats.failed > 0 { throw FixtureError("\(producer.deliveryStats.failed) rows not delivered") }
            } catch { lock.withLock { failure = error } }
            done.signal()
        }
        thread.start()
    }

    /// Stops producing, waits for every row to be acknowledged and returns the rows per partition.
    func finish() throws -> [Int64] {
        stopFlag.store(true, ordering: .relaxed)
        done.wait()
        return try lock.withLock {
            if let failure { throw failure }
            return counts
        }
    }

    var produced: Int64 { lock.withLock { counts.reduce(0, +) } }
}

@Suite("featurize failover by lease (real processes)", .serialized, .timeLimit(.minutes(5)))
struct FeaturizeFailoverTests {
    @Test("3 workers: SIGKILL one, SIGSTOP another past its lease then SIGCONT — partitions move, every row in exactly one batch")
    func killAndPause() throws {
        let partitions = 6
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("fo", partitions: partitions)
        let rows = syntheticRows(200_000, seed: 33)
        let statsFile = FileManager.default.temporaryDirectory.appendingPathComponent("fo-\(UUID().uuidString).stats")
        defer { try? FileManager.default.removeItem(at: statsFile) }
        try statsFor(Array(rows.prefix(4000))).write(to: statsFile)
        let addr = "127.0.0.1:\(redis.port)"
        let store = FeatureStore(redis: try RedisConnection(address: addr))
        let all = (0..<Int32(partitions)).map { $0 }
        func owners() -> [Int32: String] { ((try? store.leaseHolders(topic: "fo", partitions: all)) ?? [:]).mapValues(\.owner) }
        func progress(_ p: Int32) -> Int64 { (try? store.readProgress(topic: "fo", partition: p)) ?? -1 }
        func held(by w: StreamrecProcess) -> [Int32] { owners().filter { $0.value.hasSuffix(":\(w.process.processIdentifier)") }.keys.sorted() }

        let producer = try PacedProducer(rows: rows, topic: "fo", bootstrap: cluster.bootstrapServers, partitions: partitions)
        let args = ["featurize", "--topic", "fo", "--bootstrap", cluster.bootstrapServers, "--redis", addr, "--stats", statsFile.path,
                    "--batch-size", "100", "--linger-ms", "100", "--feature-shards", "4", "--progress-seconds", "2"]
        let a = try StreamrecProcess(args), b = try StreamrecProcess(args), c = try StreamrecProcess(args)
        let workers = [a, b, c]
        #expect(try poll(for: 60) { workers.map { held(by: $0).count } == [2, 2, 2] && committedRows(store.redis, shards: 4) > 2000 },
                "3 workers share the partitions fairly: \(owners()); stderr: \(a.stderr.suffix(800)) \(b.stderr.suffix(800))")

        // SIGKILL A and never restart it: its partitions move once its leases expire.
        let aParts = held(by: a)
        let atKill = Dictionary(uniqueKeysWithValues: aParts.map { ($0, progress($0)) })
        let killed = ContinuousClock.now
        a.signal(SIGKILL)
        _ = a.wait(timeout: .seconds(10))
        #expect(try poll(for: 30) {
            let o = owners()
            return aParts.allSatisfy { p in o[p] != nil && !o[p]!.hasSuffix(":\(a.process.processIdentifier)") && progress(p) > atKill[p]! }
        }, "A's partitions \(aParts) were not taken over: \(owners())")
        let afterKill = ContinuousClock.now - killed
        #expect(afterKill < .seconds(10), "default lease 5 s: takeover within 10 s, took \(afterKill)")

        // SIGSTOP B for longer than its lease: C takes everything; after SIGCONT B learns it lost its
        // leases (it never commits them again) and the partitions are shared again.
        let bParts = held(by: b)
        let atStop = Dictionary(uniqueKeysWithValues: bParts.map { ($0, progress($0)) })
        let stopped = ContinuousClock.now
        b.signal(SIGSTOP)
        #expect(try poll(for: 30) {
            let o = owners()
            return bParts.allSatisfy { p in o[p]?.hasSuffix(":\(c.process.processIdentifier)") == true && progress(p) > atStop[p]! }
        }, "B's partitions \(bParts) were not taken over while it was stopped: \(owners())")
        let afterStop = ContinuousClock.now - stopped
        b.signal(SIGCONT)
        let resumed = ContinuousClock.now
        #expect(try poll(for: 30) { held(by: b).count == 3 && held(by: c).count == 3 }, "rebalanced after SIGCONT: \(owners())")
        let rebalance = ContinuousClock.now - resumed

        let produced = try producer.finish()
        #expect(try poll(for: 60) { all.allSatisfy { progress($0) == produced[Int($0)] } }, "every offset committed: \(all.map(progress)) vs \(produced)")
        b.signal(SIGTERM)
        #expect(b.wait(timeout: .seconds(20)) == 0, "B stops cleanly: \(b.stderr.suffix(2000))")
        #expect(b.stderr.contains("LEASE LOST"), "B says it lost its leases")
        let summaryB = try #require(b.stdout.split(separator: "\n").first { $0.hasPrefix("summary ") })
        let bJSON = try #require(try JSONSerialization.jsonObject(with: Data(summaryB.dropFirst("summary ".count).utf8)) as? [String: Any])
        #expect((bJSON["leasesLost"] as? Int ?? 0) >= 1 && (bJSON["leasesAcquired"] as? Int ?? 0) >= 4)

        // Every row in exactly one batch: per partition, the committed ranges tile [0, produced).
        let entries = try allBatches(redis: addr, featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == Int(produced.reduce(0, +)))
        for p in all {
            let ranges = entries.filter { $0.batch.source.partition == p }.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }
            #expect(coverageProblem(ranges, end: produced[Int(p)]) == nil, "partition \(p)")
        }

        // SIGKILL the last worker: once its leases expire, status flags it dead and every partition unowned.
        #expect(try poll(for: 10) { held(by: c).count == partitions }, "C takes B's partitions after B's clean stop")
        c.signal(SIGKILL)
        _ = c.wait(timeout: .seconds(10))
        #expect(try poll(for: 15) { owners().isEmpty })
        let bin = try #require(streamrecBinary())
        let r = try runProcess(bin, ["status", "--redis", addr, "--json"], timeout: .seconds(30))
        let st = try JSONDecoder().decode(FeatureStoreStatus.self, from: Data(r.stdout.utf8))
        #expect(st.partitions.filter { $0.topic == "fo" }.allSatisfy { $0.owner == nil })
        #expect(st.workers.count == 2 && st.workers.allSatisfy(\.dead), "A and C are dead, B left cleanly: \(st.workers)")
        let text = try runProcess(bin, ["status", "--redis", addr], timeout: .seconds(30)).stdout
        #expect(text.contains("! NO OWNER") && text.contains("! DEAD") && text.contains("without an owner"))

        print(String(format: "FAILOVER FIGURES: takeover after SIGKILL %.1f s, after SIGSTOP %.1f s, rebalance after SIGCONT %.1f s; "
                     + "rows produced %lld, in batches %d, lost 0, duplicated 0",
                     Double(afterKill.components.seconds) + Double(afterKill.components.attoseconds) / 1e18,
                     Double(afterStop.components.seconds) + Double(afterStop.components.attoseconds) / 1e18,
                     Double(rebalance.components.seconds) + Double(rebalance.components.attoseconds) / 1e18,
                     produced.reduce(0, +), entries.reduce(0) { $0 + $1.batch.batch.count }))
    }

    @Test("two workers with the same --shard: the second stands by (said once, no commit gap) and takes over when the first stops")
    func sameShardStandby() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("ss", partitions: 2)
        let rows = syntheticRows(3000, seed: 5)
        try produce(Array(rows.prefix(1000)), topic: "ss", bootstrap: cluster.bootstrapServers, partitions: 2)
        let statsFile = FileManager.default.temporaryDirectory.appendingPathComponent("ss-\(UUID().uuidString).stats")
        defer { try? FileManager.default.removeItem(at: statsFile) }
        try statsFor(Array(rows.prefix(1000))).write(to: statsFile)
        let addr = "127.0.0.1:\(redis.port)"
        let args = ["featurize", "--shard", "0", "--shards", "1", "--topic", "ss", "--bootstrap", cluster.bootstrapServers, "--redis", addr,
                    "--stats", statsFile.path, "--batch-size", "100", "--linger-ms", "50", "--feature-shards", "2", "--lease-seconds", "2"]
        let store = FeatureStore(redis: try RedisConnection(address: addr))
        let first = try StreamrecProcess(args)
        #expect(try poll(for: 30) { committedRows(store.redis, shards: 2) == 1000 })
        let second = try StreamrecProcess(args)
        #expect(try poll(for: 30) { second.stderr.contains("Standing by") }, "\(second.stderr)")
        try produce(Array(rows[1000..<2000]), topic: "ss", bootstrap: cluster.bootstrapServers, partitions: 2)
        #expect(try poll(for: 30) { committedRows(store.redis, shards: 2) == 2000 })
        first.signal(SIGTERM)
        #expect(first.wait(timeout: .seconds(20)) == 0)
        try produce(Array(rows[2000...]), topic: "ss", bootstrap: cluster.bootstrapServers, partitions: 2)
        #expect(try poll(for: 30) { committedRows(store.redis, shards: 2) == 3000 }, "the standby took over: \(second.stderr.suffix(1500))")
        second.signal(SIGTERM)
        #expect(second.wait(timeout: .seconds(20)) == 0)
        #expect(!second.stderr.contains("commit gap") && !first.stderr.contains("commit gap"))
        #expect(second.stderr.components(separatedBy: "Standing by").count == 2, "said once")
        let entries = try allBatches(redis: addr, featureShards: 2)
        for p in Int32(0)..<2 {
            let ranges = entries.filter { $0.batch.source.partition == p }.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }
            #expect(coverageProblem(ranges, end: 1500) == nil, "partition \(p)")
        }
    }
}
