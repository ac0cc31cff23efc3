import Features
import FeatureStore
import Featurize
import Foundation
import Streaming
import Synchronization
import Testing
import TestSupport

/// Synthetic Criteo rows (bytes, no newline).
func syntheticRows(_ n: Int, seed: UInt64 = 1) -> [[UInt8]] {
    var g = SyntheticCriteo(seed: seed)
    return (0..<n).map { _ in g.nextRow().line }
}

/// Stats built from `rows` (all rows valid).
func statsFor(_ rows: [[UInt8]], minFrequency: Int = 2) -> FeatureStats {
    var b = FeatureStatsBuilder()
    var row = CriteoRow()
    let parser = CriteoParser()
    for r in rows { if (try? parser.parse(bytes: r, into: &row)) != nil { b.add(row) } }
    return b.build(minFrequency: minFrequency)
}

/// Starts a broker of `kind` with `topics` (name → partitions) for a test parametrised over
/// `KafkaBrokerKind.allCases`. When noida-db is not installed and the run does not require it
/// (by hand, without scripts/test.sh) the test case is cancelled — shown as skipped — with the
/// reason printed; scripts/test.sh requires it, so there a missing noida-db fails the test.
func startBroker(_ kind: KafkaBrokerKind, topics: [String: Int]) throws -> TestKafkaBroker {
    do {
        return try TestKafkaBroker(kind, topics: topics)
    } catch let unavailable as KafkaBrokerUnavailable {
        print("skipping the \(kind) case: \(unavailable)")
        try Test.cancel("\(unavailable)")
    }
}

/// Produces `rows[i]` to partition `partitionOf(i)`; returns (partition, offset) per row in order.
@discardableResult
func produce(_ rows: [[UInt8]], topic: String, bootstrap: String, partitions: Int) throws -> [(Int32, Int)] {
    let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: bootstrap, ["linger.ms": "5"]))
    var placement: [(Int32, Int)] = []
    var next = [Int](repeating: 0, count: partitions)
    for (i, r) in rows.enumerated() {
        let p = Int32(i % partitions)
        try producer.produce(topic: topic, partition: p, key: Array("k\(i)".utf8), value: r)
        placement.append((p, next[Int(p)])); next[Int(p)] += 1
    }
    try producer.flush(timeout: .seconds(30))
    precondition(producer.deliveryStats.failed == 0)
    return placement
}

/// Runs a worker (of any input kind) on its own thread; `join()` waits for it.
final class WorkerThread: @unchecked Sendable {
    private let stopWorker: @Sendable () -> Void
    let logs = CapturedLog()
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var result: Result<FeaturizeSummary, Error>?

    convenience init(options: FeaturizeOptions, stats: FeatureStats) {
        self.init(options: options, featurizer: CriteoFeaturizer(stats: stats, statsSource: options.statsSource))
    }

    init<F: Featurizer>(options: FeaturizeOptions, featurizer: F) {
        let logs = self.logs
        let worker = FeaturizeEngine(options: options, featurizer: featurizer, logger: logs.logger("featurize"))
        stopWorker = { worker.stop() }
        let thread = Thread { [self] in
            let r = Result { try worker.run() }
            self.lock.withLock { self.result = r }
            self.done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    var log: [String] { logs.lines }
    func stop() { stopWorker() }

    @discardableResult
    func join(timeout: Duration = .seconds(120)) throws -> FeaturizeSummary {
        guard done.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds * 1000))) == .success else {
            stopWorker()
            _ = done.wait(timeout: .now() + 10)
            throw FixtureError("featurize worker did not finish within \(timeout)")
        }
        return try lock.withLock { result! }.get()
    }
}

func options(shard: Int = 0, shards: Int = 1, topic: String, bootstrap: String, redis: String, batchSize: Int = 100,
             featureShards: Int = 4, untilIdle: Duration? = .seconds(2), parseThreads: Int = 2) -> FeaturizeOptions {
    var o = FeaturizeOptions(shard: shard, shards: shards, topic: topic, kafka: KafkaConfig(bootstrapServers: bootstrap),
                             redisAddress: try! RedisEndpoint(parsing: redis), workerId: "test-\(shard)")  // test-made HOST:PORT
    o.batchSize = batchSize
    o.featureShards = featureShards
    o.untilIdle = untilIdle
    o.linger = .milliseconds(100)
    o.progressEvery = .seconds(60)
    o.parseThreads = parseThreads
    return o
}

/// A rows feature-stream entry.
struct RowsEntry {
    var id: String
    var batch: SourcedFeatureBatch
}

/// Every batch in every (rows) feature shard, decoded.
func allBatches(redis: String, featureShards: Int, prefix: String = "sr") throws -> [RowsEntry] {
    let reader = FeatureStreamReader(redis: try RedisConnection(address: redis), prefix: prefix)
    return try (0..<featureShards).flatMap { try reader.range(shard: $0) }.map { e in
        guard let rows = e.rows else { throw FeatureStoreError.unexpectedReply("entry \(e.id) of a rows stream holds \(e.payload)") }
        return RowsEntry(id: e.id, batch: rows)
    }
}

/// Checks the covered offset ranges of a partition: contiguous from 0 to `end`, no overlap.
/// Returns a description of the first problem, or nil.
func coverageProblem(_ ranges: [(Int64, Int64)], end: Int64) -> String? {
    var next: Int64 = 0
    for (a, b) in ranges.sorted(by: { $0.0 < $1.0 }) {
        if a != next { return a < next ? "overlap at \(a)" : "hole \(next)..<\(a)" }
        next = b + 1
    }
    return next >= end ? nil : "not covered beyond \(next) (end \(end))"
}
