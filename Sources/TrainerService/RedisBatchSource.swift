import Logging
import Foundation
import Features
import FeatureStore
import Streaming
import Training

/// Feature batches from the Redis feature streams of the shards this rank owns.
///
/// Reads strictly after the replicated `positions` (the stream id trained up to, per shard),
/// so after a restart from a checkpoint, or a reassignment of shards, every batch is trained
/// exactly once. Prefetches a few entries per shard; `reassign` drops the prefetch.
/// Owned by the trainer thread.
public final class RedisBatchSource: BatchSource {
    public let reader: FeatureStreamReader
    public let shardCount: Int
    public private(set) var shards: [Int]
    /// Last trained stream id per shard, identical on every rank.
    public var positions: [Int: StreamPosition]
    private var buffers: [Int: [FeatureStreamEntry]] = [:]
    private var next = 0
    private let prefetch: Int
    /// Rows are validated by the feature workers (their dead letters, `streamrec status`); the
    /// trainer never sees a refused row.
    public let rejections = RejectionCounts()

    /// Rides out Redis restarts: while Redis is away `poll` reports idle.
    let link: RedisLink

    public init(reader: FeatureStreamReader, shardCount: Int, shards: [Int], positions: [Int: StreamPosition], prefetch: Int = 4,
                redisAddress: String = "redis", logger: Logger = Logger(label: "streamrec", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.reader = reader
        self.link = RedisLink(redis: reader.redis, address: redisAddress, logger: logger)
        self.shardCount = shardCount
        self.shards = shards
        self.positions = positions
        self.prefetch = prefetch
    }

    public var isWaitingForUpstream: Bool { link.isDown }

    public func reassign(_ shards: [Int]) {
        self.shards = shards
        buffers.removeAll()
        next = 0
    }

    public func poll(timeout: Double) throws -> SourcePoll {
        guard link.isUp() else {
            usleep(UInt32(min(timeout, 0.05) * 1e6))
            return .idle
        }
        do {
            return try pollShards(timeout: timeout)
        } catch {
            try link.absorb(error)   // an outage: report idle; anything else (a corrupt entry) ends the job
            return .idle
        }
    }

    private func pollShards(timeout: Double) throws -> SourcePoll {
        guard !shards.isEmpty else {
            usleep(UInt32(min(timeout, 0.05) * 1e6))
            return .idle
        }
        // Round-robin over owned shards so one busy shard cannot starve the others.
        for k in 0..<shards.count {
            let shard = shards[(next + k) % shards.count]
            if buffers[shard, default: []].isEmpty { try refill(shard, block: nil) }
            if var buf = buffers[shard], !buf.isEmpty {
                let entry = buf.removeFirst()
                buffers[shard] = buf
                next = (next + k + 1) % shards.count
                return .batch(sourced(entry, shard: shard))
            }
        }
        // Nothing anywhere: wait briefly on one shard rather than spin.
        let shard = shards[next % shards.count]
        next = (next + 1) % shards.count
        try refill(shard, block: .milliseconds(Int(max(1, timeout * 1000))))
        if var buf = buffers[shard], !buf.isEmpty {
            let entry = buf.removeFirst()
            buffers[shard] = buf
            return .batch(sourced(entry, shard: shard))
        }
        return .idle
    }

    private func refill(_ shard: Int, block: Duration?) throws {
        // After the last prefetched entry, or after the trained position.
        let after = buffers[shard]?.last.map(\.id) ?? (positions[shard] ?? .start).description
        let entries = try reader.read(shard: shard, after: after, count: prefetch, block: block)
        buffers[shard, default: []].append(contentsOf: entries)
    }

    private func sourced(_ entry: FeatureStreamEntry, shard: Int) -> SourcedBatch {
        let payload: BatchPayload
        switch entry.payload {
        case .rows(let b): payload = .rows(b.batch)
        case .transitions(let b): payload = .transitions(b.batch)
        }
        return SourcedBatch(payload, epoch: 1, positions: [ShardAssignment.key(shard): entry.id],
                            producedAtMs: entry.source.producedAtMs, ordinal: entry.ordinal)
    }
}
