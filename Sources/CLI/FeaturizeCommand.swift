import ArgumentParser
import Features
import FeatureStore
import Featurize
import Foundation
import Streaming
import Synchronization

/// Set by SIGINT/SIGTERM; the worker commits what it holds and exits 0.
let featurizeStopSignal = Atomic<Bool>(false)

/// Unblocks SIGINT/SIGTERM (a process spawned from a test thread inherits a mask that blocks
/// them) and installs a handler that only sets `featurizeStopSignal`.
func installStopSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    let handler: @convention(c) (Int32) -> Void = { _ in featurizeStopSignal.store(true, ordering: .relaxed) }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
}

/// Parses repeated `-X key=value` librdkafka properties.
func kafkaProperties(_ items: [String]) throws -> [String: String] {
    var out: [String: String] = [:]
    for item in items {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw ValidationError("-X expects key=value (a librdkafka property), got \"\(item)\"")
        }
        out[String(item[..<eq])] = String(item[item.index(after: eq)...])
    }
    return out
}

struct Featurize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Feature worker: Kafka partitions → parsed, normalised, id-encoded batches → Redis feature streams.",
        discussion: """
        Owns the partitions p ≡ SHARD (mod SHARDS) of --topic by explicit assignment and resumes \
        each from its progress in Redis (sr:progress:TOPIC:P), not from Kafka committed offsets. \
        Rows are parsed and validated (bad rows → the sr:deadletter stream with a reason), dense \
        fields min/max-normalised and categories mapped to ids with the shared dictionary \
        (snapshot from --stats, online growth in Redis), and packed into batches of --batch-size \
        rows appended to sr:fs:(P mod --feature-shards). Each batch is committed with the \
        partition's progress in one Lua script, so a worker killed at any instant and restarted \
        covers every row exactly once. Stops cleanly on SIGINT/SIGTERM (commits what it holds). \
        See docs/ARCHITECTURE.md and Sources/FeatureStore/FeatureStoreLayout.swift for the layout.
        """)

    @Option(help: "This worker's shard k (0 ≤ k < --shards): it owns partitions p ≡ k (mod K).")
    var shard: Int = 0

    @Option(help: "Number of featurize workers K sharing the topic.")
    var shards: Int = 1

    @Option(help: "Kafka topic of Criteo rows (one row per message).")
    var topic: String = "criteo"

    @Option(help: "Kafka bootstrap servers HOST:PORT[,HOST:PORT…].")
    var bootstrap: String = "127.0.0.1:9092"

    @Option(name: .customShort("X"), parsing: .unconditionalSingleValue,
            help: "A librdkafka property key=value, passed through unchanged (repeatable; SASL/SSL work).")
    var kafkaProperty: [String] = []

    @Option(help: "Redis HOST:PORT of the feature store.")
    var redis: String = "127.0.0.1:6379"

    @Option(help: "Key prefix in Redis.")
    var prefix: String = "sr"

    @Option(help: "Feature statistics file from `streamrec stats` (dense min/max, dictionary snapshot).")
    var stats: String?

    @Option(help: "Rows per feature batch.")
    var batchSize: Int = 1024

    @Option(help: "Commit a partial batch this long after it started (freshness).")
    var lingerMs: Int = 200

    @Option(help: "Pause while a target feature stream has this many batches not yet trained.")
    var maxPending: Int = 256

    @Option(help: "Number of feature shards S (partition p → stream sr:fs:(p mod S)).")
    var featureShards: Int = 8

    @Option(help: "Stop after this many seconds without new messages (tests, benchmarks).")
    var untilIdle: Double?

    @Option(help: "Worker id in sr:workers (default featurize-KofN@host:pid).")
    var workerId: String?

    @Flag(help: "Only consume and count messages (the raw-consume ceiling for `bench`); writes nothing.")
    var raw = false

    @Option(help: "Seconds between progress lines.")
    var progressSeconds: Double = 5

    func validate() throws {
        guard shards > 0, shard >= 0, shard < shards else { throw ValidationError("need 0 ≤ --shard < --shards") }
        guard batchSize > 0, batchSize <= 1_000_000 else { throw ValidationError("--batch-size must be in 1…1000000") }
        guard featureShards > 0 else { throw ValidationError("--feature-shards must be positive") }
        guard maxPending > 0 else { throw ValidationError("--max-pending must be positive") }
        if !raw && stats == nil { throw ValidationError("--stats FILE is required (create it with `streamrec stats`)") }
    }

    func run() throws {
        installStopSignals()
        let statsValue: FeatureStats
        if let stats {
            statsValue = try FeatureStats.read(from: URL(fileURLWithPath: stats))
        } else {
            statsValue = FeatureStats(minFrequency: 1, denseMin: Array(repeating: 0, count: 13),
                                      denseMax: Array(repeating: 1, count: 13), rows: 0, rejected: 0)
        }
        var config = KafkaConfig(bootstrapServers: bootstrap, try kafkaProperties(kafkaProperty))
        if config["client.id"] == nil { config["client.id"] = "streamrec-featurize-\(shard)" }
        var options = FeaturizeOptions(shard: shard, shards: shards, topic: topic, kafka: config,
                                       redisAddress: redis, workerId: workerId)
        options.prefix = prefix
        options.batchSize = batchSize
        options.linger = .milliseconds(lingerMs)
        options.maxPending = Int64(maxPending)
        options.featureShards = featureShards
        options.raw = raw
        options.untilIdle = untilIdle.map { .milliseconds(Int64($0 * 1000)) }
        options.statsSource = stats ?? ""
        options.progressEvery = .milliseconds(Int64(progressSeconds * 1000))
        let worker = FeaturizeWorker(options: options, stats: statsValue,
                                     shouldStop: { featurizeStopSignal.load(ordering: .relaxed) })
        let summary = try worker.run()
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        print("summary " + String(decoding: try enc.encode(summary), as: UTF8.self))
    }
}
