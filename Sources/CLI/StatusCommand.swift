import ArgumentParser
import FeatureStore
import Foundation
import Logging
import Streaming

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What the feature pipeline is doing: progress, lag, shards, dead letters, dictionary, workers.",
        discussion: """
        Reads the feature store in Redis (see Sources/FeatureStore/FeatureStoreLayout.swift). With \
        --topic it also asks Kafka (bootstrap resolved like every command's: --bootstrap, \
        $STREAMREC_BOOTSTRAP, kafka.bootstrap in --config, the local broker) for each partition's \
        watermarks and shows the lag (high watermark − progress). --json prints one JSON object for scripts.
        """)

    @OptionGroup var settings: SettingsOptions

    @OptionGroup(title: "Redis") var store: RedisOptions

    @OptionGroup(title: "Kafka (with --topic)") var kafka: KafkaOptions
    @OptionGroup(title: "Logging") var logging: LogOptions

    @Option(help: "Kafka topic whose per-partition lag to show.")
    var topic: String?

    @Option(help: "Show at least this many feature shards.")
    var featureShards: Int = 0

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if topic == nil && (kafka.bootstrap != nil || kafka.bootstrapFile != nil) {
            throw ValidationError("--bootstrap/--bootstrap-file need --topic (the topic whose lag to show)")
        }
    }

    /// Every partition of `topic` (from Kafka, also those without progress yet) with its
    /// watermarks and lag (high watermark − progress), and the lease holders. Shared with `dashboard`.
    static func addLag(_ status: inout FeatureStoreStatus, topic: String, consumer: KafkaConsumer, store: FeatureStore,
                       timeout: Duration = .seconds(5)) throws {
        let n = try consumer.partitionCount(topic: topic, timeout: timeout)
        var byPartition = Dictionary(uniqueKeysWithValues: status.partitions.filter { $0.topic == topic }.map { ($0.partition, $0) })
        for p in Int32(0)..<Int32(n) {
            let w = try consumer.watermarks(topic: topic, partition: p, timeout: timeout)
            var entry = byPartition[p] ?? .init(topic: topic, partition: p, progress: 0, highWatermark: nil, lowWatermark: nil,
                                                lag: nil, lostUpstream: status.lostUpstream["\(topic):\(p)"] ?? 0)
            entry.highWatermark = w.high
            entry.lowWatermark = w.low
            entry.lag = max(0, w.high - entry.progress)
            byPartition[p] = entry
        }
        status.partitions = status.partitions.filter { $0.topic != topic } + byPartition.values.sorted { $0.partition < $1.partition }
        try store.fillOwners(&status)
    }

    func run() throws {
        let logger = try logging.start("status", tag: "status:")
        let settingsFile = try settings.load()
        let redis = try self.store.resolve(settingsFile)
        let kafkaSettings = try topic == nil ? nil : kafka.resolve(settingsFile, role: .consumer)
        let connection = try RedisConnection(address: redis.address.value)
        let store = FeatureStore(redis: connection, prefix: redis.prefix.value)
        var status = try store.status(minShards: featureShards)
        var kafkaNote: String? = nil
        if let kafkaSettings, let topic {
            let bootstrap = kafkaSettings.bootstrap
            do {
                try Self.addLag(&status, topic: topic, consumer: try KafkaConsumer(config: kafkaSettings.config), store: store)
            } catch {
                kafkaNote = "Kafka at \(bootstrap) not reachable: \(error)"
            }
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try enc.encode(status), as: UTF8.self))
            if let kafkaNote { logger.warning("\(kafkaNote)") }
            return
        }
        print("feature store \(redis.address.value) prefix \(redis.prefix.value)")
        if let kafkaNote { print("  ! \(kafkaNote)") }
        print("partitions (\(status.partitions.count)):")
        for p in status.partitions {
            var line = "  \(p.topic)/\(p.partition)  progress \(p.progress)"
            if let h = p.highWatermark { line += "  high \(h)  lag \(p.lag ?? 0)" }
            if let l = p.lowWatermark, l > p.progress { line += "  ! RETENTION GAP: earliest retained \(l)" }
            if let h = p.highWatermark, h < p.progress { line += "  ! OFFSET RESET: progress beyond the broker's high watermark" }
            if p.lostUpstream > 0 { line += "  LOST UPSTREAM \(p.lostUpstream)" }
            line += p.owner.map { "  owner \($0) (lease token \(p.leaseToken ?? 0))" } ?? "  ! NO OWNER"
            print(line)
        }
        let unowned = status.partitions.filter { $0.owner == nil }
        if !unowned.isEmpty {
            print("  ! \(unowned.count) partition(s) without an owner: no live featurize worker holds their lease — start one "
                  + "(`streamrec featurize`); a running worker takes them within a second of their lease expiring")
        }
        print("feature shards (\(status.shards.count)):")
        for s in status.shards {
            print("  shard \(s.shard)  batches appended \(s.appended)  rows \(s.rows)  trained \(s.trained)  pending \(s.pending)  in stream \(s.streamLength)" + (s.retain.map { "  retain ≥ \($0)" } ?? ""))
        }
        print("dead letters: \(status.deadLettersTotal)" + (status.deadLetters.isEmpty ? "" : "  (" + status.deadLetters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"))
        let lostTotal = status.lostUpstream.values.reduce(0, +)
        print("rows lost upstream: \(lostTotal)" + (lostTotal == 0 ? "" : "  (" + status.lostUpstream.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"))
        for key in Set(status.offsetResetsDetected.keys).union(status.offsetResetsApplied.keys).sorted() {
            print("OFFSET RESET \(key): detected \(status.offsetResetsDetected[key] ?? 0)×, progress reset to earliest \(status.offsetResetsApplied[key] ?? 0)×"
                  + (status.offsetResetLast[key].map { "  (last: \($0))" } ?? ""))
        }
        print("dictionary: \(status.dictionaryState), next id \(status.dictionaryNextId), snapshot \(status.snapshotCategories) categories, online ids \(status.onlineIds), categories below threshold \(status.pendingCategories)" + (status.forgottenCounts > 0 ? ", forgotten at the cap \(status.forgottenCounts)" : ""))
        if let b = status.behavior {
            print("behaviour events: \(b.events) (late \(b.lateEvents)), users with state \(b.usersWithState), users known \(b.usersKnown), "
                  + "items known \(b.itemsKnown), transitions appended \(b.transitionsAppended) in \(b.batchesAppended) batches, "
                  + "batches trained \(b.batchesTrained)")
            print(Popular.describe(b.popular, indent: "  "))
        }
        let dead = status.workers.filter(\.dead)
        print("workers (\(status.workers.count)\(dead.isEmpty ? "" : ", \(dead.count) DEAD")):")
        for w in status.workers {
            let keys = ["assignment", "shard", "shards", "partitions", "rows", "batches", "dead_letters", "paused"]
            var line = String(format: "  %@  heartbeat %.1f s ago  ", w.id, w.heartbeatAgeSeconds) + keys.compactMap { k in w.info[k].map { "\(k) \($0)" } }.joined(separator: "  ")
            if w.dead {
                line += String(format: "  ! DEAD: no heartbeat within its lease (%.0f s); killed, paused or cut off — its partitions go to the live workers",
                               (Double(w.info["lease_ms"] ?? "") ?? 5000) / 1000)
            }
            print(line)
        }
    }
}
