// Reading the behaviour side of the feature store: popular items over the sliding window, user
// states, and the figures `streamrec status` shows. Written by `BehaviorFeaturizer`'s commits.

import Features
import Foundation
import Streaming

/// The current top-N of the popular-items window.
public struct PopularItems: Sendable, Codable, Equatable {
    public struct Item: Sendable, Codable, Equatable {
        public var item: String
        public var count: Int64
        public init(item: String, count: Int64) { self.item = item; self.count = count }
    }
    public var items: [Item]
    /// The window [windowStart, windowEnd) in Unix seconds: the `window_seconds / slide_seconds`
    /// slide buckets up to the one holding the newest watermark. Nil when nothing was counted.
    public var windowStart: Int64?
    public var windowEnd: Int64?
    public var windowSeconds: Int64?
    public var slideSeconds: Int64?
    /// The largest event time any behaviour worker has committed.
    public var watermark: Int64?
    /// Events counted as late (older than their partition's watermark − lateness), all partitions.
    public var lateEvents: Int64
}

/// The behaviour figures of `streamrec status`.
public struct BehaviorStatus: Sendable, Codable, Equatable {
    public var usersWithState: Int64
    public var usersKnown: Int64
    public var itemsKnown: Int64
    public var events: Int64
    public var lateEvents: Int64
    public var transitionsAppended: Int64
    public var batchesAppended: Int64
    public var batchesTrained: Int64
    public var watermark: Int64?
    public var popular: PopularItems
}

extension FeatureStore {
    /// The top `n` items of the popular window (count descending, then item id ascending).
    public func popularItems(n: Int) throws -> PopularItems {
        let meta = try hash(layout.behaviorMeta)
        let marks = try redis.command(["HVALS", layout.eventWatermarks]).elements?.compactMap(\.integer) ?? []
        let late = try sumHash(layout.lateEvents)
        guard let window = meta["window_seconds"].flatMap(Int64.init), let slide = meta["slide_seconds"].flatMap(Int64.init),
              slide > 0, window >= slide, let newest = marks.max() else {
            return PopularItems(items: [], lateEvents: late)
        }
        let end = EventTime.bucket(newest, slide: slide)
        let buckets = (end - window / slide + 1)...end
        // Every partition's counts of every bucket in the window.
        let index = try redis.command(["ZRANGEBYSCORE", layout.popularBuckets, "\(buckets.lowerBound)", "\(buckets.upperBound)"])
        try index.throwingIfError()
        let members = (index.elements ?? []).compactMap(\.text)
        var totals: [String: Int64] = [:]
        var k = 0
        while k < members.count {
            let chunk = members[k..<min(k + 1000, members.count)]
            k = chunk.endIndex
            let replies = try redis.command(["MGET"] + chunk.map { layout.popularBucketPrefix + $0 })
            try replies.throwingIfError()
            for (member, r) in zip(chunk, replies.elements ?? []) {
                guard let bytes = r.bytes else { continue }  // pruned meanwhile
                do {
                    for e in try PopularBucket.decode(bytes) { totals[String(decoding: e.key, as: UTF8.self), default: 0] += e.count }
                } catch {
                    throw FeatureStoreError.unexpectedReply("\(layout.popularBucketPrefix + member): \(error); it is written only by featurize --kind behavior")
                }
            }
        }
        let top = totals.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(max(0, n))
        return PopularItems(items: top.map { PopularItems.Item(item: $0.key, count: $0.value) },
                            windowStart: buckets.lowerBound * slide, windowEnd: (end + 1) * slide,
                            windowSeconds: window, slideSeconds: slide, watermark: newest, lateEvents: late)
    }

    /// A user's committed state, or nil when the user has none.
    public func userState(_ user: String) throws -> UserState? {
        guard let bytes = try redis.command(["HGET", layout.userStates, user]).bytes else { return nil }
        do { return try UserState.decode(bytes) } catch {
            throw FeatureStoreError.unexpectedReply("\(layout.userStates) field \(user): \(error)")
        }
    }

    /// Every user's committed state (HSCAN; for tests and small stores).
    public func allUserStates() throws -> [String: UserState] {
        var out: [String: UserState] = [:]
        var cursor = "0"
        repeat {
            let r = try redis.command(["HSCAN", layout.userStates, cursor, "COUNT", "1000"])
            guard let parts = r.elements, parts.count == 2, let next = parts[0].text, let kv = parts[1].elements else {
                throw FeatureStoreError.unexpectedReply("HSCAN \(layout.userStates) returned \(r)")
            }
            var i = 0
            while i + 1 < kv.count {
                let key = kv[i].text ?? ""
                do { out[key] = try UserState.decode(kv[i + 1].bytes ?? []) } catch {
                    throw FeatureStoreError.unexpectedReply("\(layout.userStates) field \(key): \(error)")
                }
                i += 2
            }
            cursor = next
        } while cursor != "0"
        return out
    }

    /// The behaviour pipeline's figures (zeros when it never ran under this prefix).
    public func behaviorStatus(top: Int = 5) throws -> BehaviorStatus {
        let streams = FeatureStoreLayout(prefix: layout.prefix, streams: .transitions)
        let shardIds = try scanKeys(streams.appendedPattern).compactMap { Int($0.split(separator: ":").last ?? "") }.sorted()
        let shards = shardIds.count
        var commands: [[String]] = [["HLEN", layout.userStates],
                                    ["GET", layout.behaviorNextId(.users)], ["GET", layout.behaviorNextId(.items)]]
        for s in shardIds {
            commands += [["GET", streams.rows(s)], ["GET", streams.appended(s)], ["GET", streams.trained(s)]]
        }
        let r = try redis.pipeline(commands)
        for reply in r { try reply.throwingIfError() }
        var transitions: Int64 = 0, appended: Int64 = 0, trained: Int64 = 0
        for s in 0..<shards {
            transitions += r[3 + 3 * s].integer ?? 0
            appended += r[4 + 3 * s].integer ?? 0
            trained += r[5 + 3 * s].integer ?? 0
        }
        let popular = try popularItems(n: top)
        return BehaviorStatus(
            usersWithState: r[0].integer ?? 0,
            usersKnown: max(0, (r[1].integer ?? Int64(BehaviorIdSpace.users.firstId)) - Int64(BehaviorIdSpace.users.firstId)),
            itemsKnown: max(0, (r[2].integer ?? Int64(BehaviorIdSpace.items.firstId)) - Int64(BehaviorIdSpace.items.firstId)),
            events: try sumHash(layout.behaviorEvents), lateEvents: popular.lateEvents,
            transitionsAppended: transitions, batchesAppended: appended, batchesTrained: trained,
            watermark: popular.watermark, popular: popular)
    }

    /// The sum of a hash's integer values.
    func sumHash(_ key: String) throws -> Int64 {
        (try redis.command(["HVALS", key]).elements ?? []).reduce(0) { $0 + ($1.integer ?? 0) }
    }
}

/// Tails the behaviour id spaces' logs (sr:rl:u:dict:log, sr:rl:i:dict:log: every id the
/// feature workers assigned, in id order) into `BehaviorKeys`: what an online RL trainer writes
/// into its checkpoints so they can be served and evaluated without Redis. Not thread-safe.
public struct BehaviorKeySync: Sendable {
    public private(set) var keys = BehaviorKeys()
    private var lastLogId: [BehaviorIdSpace: String] = [.users: "0-0", .items: "0-0"]

    public init() {}

    /// Applies the new log entries of both spaces (at most `maxEntries` each call and space) and
    /// returns the keys. Throws on a reply that is not a log entry.
    @discardableResult
    public mutating func sync(_ store: FeatureStore, maxEntries: Int = 1_000_000) throws -> BehaviorKeys {
        for space in BehaviorIdSpace.allCases {
            let log = "\(store.layout.behaviorIds(space)):dict:log"
            var learnt = 0
            while learnt < maxEntries {
                let r = try store.redis.command(["XRANGE", log, "(" + lastLogId[space]!, "+", "COUNT", "10000"])
                try r.throwingIfError()
                guard let entries = r.elements, !entries.isEmpty else { break }
                for entry in entries {
                    guard let parts = entry.elements, parts.count == 2, let logId = parts[0].text, let kv = parts[1].elements else {
                        throw FeatureStoreError.unexpectedReply("\(log) entry \(entry)")
                    }
                    var key: [UInt8]?, id: Int32?
                    var i = 0
                    while i + 1 < kv.count {
                        switch kv[i].text {
                        case "c": key = kv[i + 1].bytes
                        case "i": id = Int32(kv[i + 1].text ?? "")
                        default: break
                        }
                        i += 2
                    }
                    guard let key, let id, id >= space.firstId else {
                        throw FeatureStoreError.dictionaryInconsistent("\(log) entry \(logId) has no key or an id below \(space.firstId)")
                    }
                    let k = String(decoding: key, as: UTF8.self)
                    if space == .users { keys.users.set(k, id: id) } else { keys.items.set(k, id: id) }
                    lastLogId[space] = logId
                    learnt += 1
                }
            }
        }
        return keys
    }
}
