// FeatureStreamReader: how trainers (issue 4) consume feature batches.
//
// ```swift
// let reader = FeatureStreamReader(redis: try RedisConnection(address: "127.0.0.1:6379"))
// var position = checkpoint.streamPositions[shard] ?? "0-0"
// for entry in try reader.read(shard: shard, after: position, count: 8, block: .milliseconds(500)) {
//     train(entry.rows!.batch)             // FeatureBatch: ids/weights/labels (a `.transitions` reader: entry.transitions)
//     position = entry.id                   // record in the next checkpoint
// }
// try reader.markTrained(shard: shard, batches: n)          // back-pressure: pending = appended − trained
// try reader.setRetain(shard: shard, id: oldestLiveCheckpointPosition)   // lets featurize trim
// ```
// Stream ids are Redis stream ids ("ms-seq"), strictly increasing per shard; "0-0" = before the first.

import Features
import Foundation
import Streaming

/// One feature-stream entry: its stream id and the decoded batch with its Kafka source.
public struct FeatureStreamEntry: Sendable, Equatable {
    public var id: String
    /// The batch, of the reader's kind (a reader refuses an entry of another kind by name).
    public var payload: FeatureBatchCodec.Decoded
    /// The entry's number in its shard (field `n`: sr:appended:{s} right after it was appended);
    /// nil for entries written before featurize recorded it.
    public var ordinal: Int64?

    /// The rows of a `rows` entry.
    public var rows: SourcedFeatureBatch? { if case .rows(let b) = payload { return b } else { return nil } }
    /// The transitions of a `transitions` entry.
    public var transitions: SourcedTransitionBatch? { if case .transitions(let b) = payload { return b } else { return nil } }
    /// Where the batch came from (topic, partition, offsets, produced-at).
    public var source: FeatureBatchSource {
        switch payload { case .rows(let b): return b.source; case .transitions(let b): return b.source }
    }
}

/// A stream entry that could not be decoded.
public struct FeatureStreamDecodeError: Error, Sendable, CustomStringConvertible {
    public var shard: Int
    public var id: String
    public var error: FeatureBatchCodecError
    public var description: String { "feature stream shard \(shard) entry \(id): \(error)" }
}

public final class FeatureStreamReader: @unchecked Sendable {
    public let redis: RedisConnection
    public let layout: FeatureStoreLayout

    /// Reads the feature streams of `streams`' kind (`rows`: sr:fs:{s}; `transitions`: sr:rl:fs:{s}).
    public init(redis: RedisConnection, prefix: String = "sr", streams: FeatureBatchKind = .rows) {
        self.redis = redis
        self.layout = FeatureStoreLayout(prefix: prefix, streams: streams)
    }

    /// Up to `count` entries of shard `shard` with ids greater than `after`, oldest first.
    /// With `block`, waits up to that long when there are none yet (XREAD BLOCK); without, returns
    /// at once. Throws `FeatureStreamDecodeError` for a corrupt entry, `RedisError` for Redis.
    public func read(shard: Int, after: String = "0-0", count: Int, block: Duration? = nil) throws -> [FeatureStreamEntry] {
        precondition(count > 0)
        var cmd = ["XREAD", "COUNT", "\(count)"]
        if let block {
            let ms = max(1, block.milliseconds)
            cmd += ["BLOCK", "\(ms)"]
        }
        cmd += ["STREAMS", layout.featureStream(shard), after]
        let reply = try redis.command(cmd)
        guard let streams = reply.elements, let first = streams.first?.elements, first.count == 2,
              let entries = first[1].elements else { return [] }
        return try entries.map { try decodeEntry($0, shard: shard) }
    }

    /// Entries of shard `shard` with ids in [from, to] (XRANGE; "-" and "+" for the ends).
    public func range(shard: Int, from: String = "-", to: String = "+", count: Int? = nil) throws -> [FeatureStreamEntry] {
        var cmd = ["XRANGE", layout.featureStream(shard), from, to]
        if let count { cmd += ["COUNT", "\(count)"] }
        let reply = try redis.command(cmd)
        return try (reply.elements ?? []).map { try decodeEntry($0, shard: shard) }
    }

    func decodeEntry(_ entry: RedisReply, shard: Int) throws -> FeatureStreamEntry {
        guard let parts = entry.elements, parts.count == 2, let id = parts[0].text, let kv = parts[1].elements else {
            throw FeatureStoreError.unexpectedReply("stream entry \(entry)")
        }
        var payload: [UInt8]? = nil
        var ordinal: Int64? = nil
        var i = 0
        while i + 1 < kv.count {
            switch kv[i].text {
            case "b": payload = kv[i + 1].bytes
            case "n": ordinal = kv[i + 1].text.flatMap { Int64($0) }
            default: break
            }
            i += 2
        }
        guard let payload else { throw FeatureStoreError.unexpectedReply("stream entry \(id) of shard \(shard) has no field \"b\"") }
        do {
            switch layout.streams {
            case .rows: return FeatureStreamEntry(id: id, payload: .rows(try FeatureBatchCodec.decode(payload)), ordinal: ordinal)
            case .transitions:
                return FeatureStreamEntry(id: id, payload: .transitions(try FeatureBatchCodec.decodeTransitions(payload)), ordinal: ordinal)
            }
        } catch {
            throw FeatureStreamDecodeError(shard: shard, id: id, error: error)
        }
    }

    /// Adds `batches` to sr:trained:{shard} (for entries without an ordinal).
    public func markTrained(shard: Int, batches: Int) throws {
        try redis.command(["INCRBY", layout.trained(shard), "\(batches)"])
    }

    /// Sets sr:trained:{shard} to the ordinal of the entry the trainer's lineage has trained up
    /// to. Setting (not adding) keeps the count equal to the lineage when a restarted trainer
    /// trains the batches after its checkpoint again.
    public func markTrained(shard: Int, through ordinal: Int64) throws {
        try redis.command(["SET", layout.trained(shard), "\(ordinal)"])
    }

    /// Sets sr:retain:{shard}: featurize may delete entries with smaller ids.
    public func setRetain(shard: Int, id: String) throws {
        try redis.command(["SET", layout.retain(shard), id])
    }

    /// Batches appended minus batches trained for a shard.
    public func pending(shard: Int) throws -> Int64 {
        let r = try redis.pipeline([["GET", layout.appended(shard)], ["GET", layout.trained(shard)]])
        return (r[0].integer ?? 0) - (r[1].integer ?? 0)
    }

    /// Entries currently in a shard's stream (XLEN).
    public func length(shard: Int) throws -> Int {
        Int(try redis.command(["XLEN", layout.featureStream(shard)]).integer ?? 0)
    }
}
