// What `streamrec status` reports, gathered from the Redis layout (see FeatureStoreLayout).

import Foundation
import Streaming

public struct FeatureStoreStatus: Sendable, Codable, Equatable {
    public struct Partition: Sendable, Codable, Equatable {
        public var topic: String
        public var partition: Int32
        public var progress: Int64
        /// Kafka high watermark and lag (high − progress), when a broker was asked.
        public var highWatermark: Int64?
        public var lowWatermark: Int64?
        public var lag: Int64?
        public var lostUpstream: Int64
        /// The worker holding the partition's lease and its fencing token; nil = NO OWNER (no
        /// worker has it: every worker is gone, or none has taken it over yet).
        public var owner: String? = nil
        public var leaseToken: Int64? = nil
        public init(topic: String, partition: Int32, progress: Int64, highWatermark: Int64? = nil,
                    lowWatermark: Int64? = nil, lag: Int64? = nil, lostUpstream: Int64 = 0) {
            self.topic = topic; self.partition = partition; self.progress = progress
            self.highWatermark = highWatermark; self.lowWatermark = lowWatermark; self.lag = lag
            self.lostUpstream = lostUpstream
        }
    }
    public struct Shard: Sendable, Codable, Equatable {
        public var shard: Int
        public var appended: Int64
        public var rows: Int64
        public var trained: Int64
        public var pending: Int64
        public var streamLength: Int64
        public var retain: String?
    }
    public struct Worker: Sendable, Codable, Equatable {
        public var id: String
        public var heartbeatAgeSeconds: Double
        public var info: [String: String]
        /// No heartbeat within its lease time (`lease_ms` in its heartbeat, else 5 s): killed,
        /// paused or cut off. Its partitions are taken over by the others once its leases expire.
        public var dead: Bool = false
    }
    public var prefix: String
    public var partitions: [Partition]
    public var shards: [Shard]
    public var deadLetters: [String: Int64]
    public var deadLettersTotal: Int64
    public var lostUpstream: [String: Int64]
    /// "{topic}:{p}" → times its stored progress was found beyond the broker's high watermark,
    /// times it was reset to the broker's earliest offset, and the last such event.
    public var offsetResetsDetected: [String: Int64] = [:]
    public var offsetResetsApplied: [String: Int64] = [:]
    public var offsetResetLast: [String: String] = [:]
    public var dictionaryState: String
    public var dictionaryNextId: Int64
    public var snapshotCategories: Int64
    public var snapshotNextId: Int64
    public var onlineIds: Int64
    public var pendingCategories: Int64
    /// Below-threshold counts forgotten because a field's pending hash hit its cap.
    public var forgottenCounts: Int64 = 0
    public var workers: [Worker]
    /// The behaviour pipeline (featurize --kind behavior), when it ran under this prefix.
    public var behavior: BehaviorStatus? = nil
}

extension FeatureStore {
    /// Collects the status. Shards are those with counters or streams in Redis (and at least
    /// `minShards`).
    public func status(minShards: Int = 0) throws -> FeatureStoreStatus {
        let scan = scanKeys
        let lost = try hash(layout.lost).mapValues { Int64($0) ?? 0 }
        // Progress keys: prefix:progress:{topic}:{p}
        let progressPrefix = "\(layout.prefix):progress:"
        var partitions: [FeatureStoreStatus.Partition] = []
        let pkeys = try scan(layout.progressPattern)
        if !pkeys.isEmpty {
            let values = try redis.pipeline(pkeys.map { ["GET", $0] })
            for (k, v) in zip(pkeys, values) {
                let rest = k.dropFirst(progressPrefix.count)
                guard let colon = rest.lastIndex(of: ":"), let p = Int32(rest[rest.index(after: colon)...]) else { continue }
                let topic = String(rest[..<colon])
                partitions.append(.init(topic: topic, partition: p, progress: v.integer ?? 0, highWatermark: nil,
                                        lowWatermark: nil, lag: nil,
                                        lostUpstream: lost[FeatureStoreLayout.lostField(topic: topic, partition: p)] ?? 0))
            }
        }
        partitions.sort { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        var shardIds = Set(0..<minShards)
        for pattern in [layout.appendedPattern, "\(layout.prefix):fs:*", "\(layout.prefix):trained:*"] {
            for k in try scan(pattern) { if let n = Int(k.split(separator: ":").last ?? "") { shardIds.insert(n) } }
        }
        var shards: [FeatureStoreStatus.Shard] = []
        for sh in shardIds.sorted() {
            let r = try redis.pipeline([["GET", layout.appended(sh)], ["GET", layout.rows(sh)], ["GET", layout.trained(sh)],
                                        ["XLEN", layout.featureStream(sh)], ["GET", layout.retain(sh)]])
            let appended = r[0].integer ?? 0, trained = r[2].integer ?? 0
            shards.append(.init(shard: sh, appended: appended, rows: r[1].integer ?? 0, trained: trained,
                                pending: appended - trained, streamLength: r[3].integer ?? 0, retain: r[4].text))
        }
        let dl = try hash(layout.deadLetterCount).mapValues { Int64($0) ?? 0 }
        let meta = try dictionaryMeta()
        let nextId = try redis.command(["GET", layout.dictNextId]).integer ?? 0
        let snapNext = Int64(meta["snapshot_next_id"] ?? "") ?? nextId
        var pendingCats: Int64 = 0
        let pend = try redis.pipeline((0..<26).map { ["HLEN", layout.dictPending(field: $0)] })
        for r in pend { pendingCats += r.integer ?? 0 }
        // sr:dict:pending also keeps every online-assigned category (as -id): not pending.
        pendingCats = max(0, pendingCats - max(0, nextId - snapNext))
        let nowMs = Date().timeIntervalSince1970 * 1000
        var workers: [FeatureStoreStatus.Worker] = []
        for (id, json) in try hash(layout.workers) {
            var info: [String: String] = [:]
            var age = -1.0
            if let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] {
                for (k, v) in obj { info[k] = "\(v)" }
                if let seen = obj["last_seen_ms"] as? NSNumber { age = (nowMs - seen.doubleValue) / 1000 }
            }
            let leaseSeconds = (Double(info["lease_ms"] ?? "") ?? 5000) / 1000
            workers.append(.init(id: id, heartbeatAgeSeconds: age, info: info, dead: age < 0 || age > leaseSeconds))
        }
        workers.sort { $0.id < $1.id }
        let resetsDetected = try hash(layout.offsetResetsDetected).mapValues { Int64($0) ?? 0 }
        let resetsApplied = try hash(layout.offsetResetsApplied).mapValues { Int64($0) ?? 0 }
        let resetLast = try hash(layout.offsetResetLast)
        let behavior = try behaviorStatus()
        var status = FeatureStoreStatus(prefix: layout.prefix, partitions: partitions, shards: shards, deadLetters: dl,
                                  deadLettersTotal: dl.values.reduce(0, +), lostUpstream: lost,
                                  offsetResetsDetected: resetsDetected, offsetResetsApplied: resetsApplied, offsetResetLast: resetLast,
                                  dictionaryState: meta["state"] ?? "not loaded", dictionaryNextId: nextId,
                                  snapshotCategories: Int64(meta["snapshot_categories"] ?? "") ?? 0,
                                  snapshotNextId: snapNext, onlineIds: max(0, nextId - snapNext),
                                  pendingCategories: pendingCats,
                                  forgottenCounts: Int64(meta["forgotten_counts"] ?? "") ?? 0, workers: workers)
        if behavior.events > 0 || behavior.usersWithState > 0 || behavior.batchesAppended > 0 { status.behavior = behavior }
        try fillOwners(&status)
        return status
    }

    /// Sets each partition's lease holder (`owner`, `leaseToken`); nil where no lease exists.
    public func fillOwners(_ status: inout FeatureStoreStatus) throws {
        for topic in Set(status.partitions.map(\.topic)) {
            let holders = try leaseHolders(topic: topic, partitions: status.partitions.filter { $0.topic == topic }.map(\.partition))
            for i in status.partitions.indices where status.partitions[i].topic == topic {
                status.partitions[i].owner = holders[status.partitions[i].partition]?.owner
                status.partitions[i].leaseToken = holders[status.partitions[i].partition]?.token
            }
        }
    }

    /// Keys matching `pattern` (SCAN).
    public func scanKeys(_ pattern: String) throws -> [String] {
        var cursor = "0"
        var keys: [String] = []
        repeat {
            let r = try redis.command(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"])
            guard let e = r.elements, e.count == 2 else { break }
            cursor = e[0].text ?? "0"
            keys += (e[1].elements ?? []).compactMap(\.text)
        } while cursor != "0"
        return keys
    }
}
