// The trainer's history: one small JSON point per `--log-every` steps, appended by trainer rank 0
// to a capped Redis list (`FeatureStoreLayout.trainerHistory`, sr:train:history) and read by
// `streamrec dashboard` to draw its curves. Lives here, beside the layout, because both the
// trainer (TrainerService) and the dashboard (no Open MPI) read or write it.

import Foundation
import Streaming

/// One point of the trainer's history (JSON keys in snake_case).
public struct TrainerHistoryPoint: Sendable, Codable, Equatable {
    /// When rank 0 recorded it (ms since the epoch).
    public var timeMs: Int64
    public var step: Int
    public var samples: Int
    /// The family's `TrainableModel.metrics`: loss terms and pv_auc (Wide&Deep) or pv_ndcg@10 (RL).
    public var metrics: [String: Double]
    public var samplesPerSecond: Double
    public var ranks: Int
    /// The newest checkpoint version written so far (e.g. step-000000000120), if any.
    public var checkpoint: String?
    /// Event → trained: the newest trained batch's training time minus its earliest Kafka
    /// message timestamp (ms), when the batches carry one.
    public var freshnessMs: Double?
    /// The model family (`model_kind`: widedeep, reinforce, …).
    public var kind: String?

    public init(timeMs: Int64, step: Int, samples: Int, metrics: [String: Double], samplesPerSecond: Double, ranks: Int,
                checkpoint: String? = nil, freshnessMs: Double? = nil, kind: String? = nil) {
        self.timeMs = timeMs; self.step = step; self.samples = samples; self.metrics = metrics
        self.samplesPerSecond = samplesPerSecond; self.ranks = ranks; self.checkpoint = checkpoint
        self.freshnessMs = freshnessMs; self.kind = kind
    }

    enum CodingKeys: String, CodingKey {
        case step, samples, metrics, ranks, checkpoint, kind
        case timeMs = "time_ms", samplesPerSecond = "samples_per_second", freshnessMs = "freshness_ms"
    }

    /// JSON has no NaN: a metric that is not finite yet (e.g. pv_auc before both labels are seen)
    /// is left out rather than failing the whole point.
    public func encoded() throws -> String {
        var point = self
        point.metrics = metrics.filter { $0.value.isFinite }
        if let f = freshnessMs, !f.isFinite { point.freshnessMs = nil }
        if !point.samplesPerSecond.isFinite { point.samplesPerSecond = 0 }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(point), as: UTF8.self)
    }
}

/// Appends to and reads the capped history list.
public struct TrainerHistory: Sendable {
    /// Points kept (the oldest are trimmed): a few hours at the default --log-every.
    public static let defaultCapacity = 5000
    public let key: String
    public let capacity: Int

    public init(layout: FeatureStoreLayout, capacity: Int = TrainerHistory.defaultCapacity) {
        key = layout.trainerHistory
        self.capacity = max(1, capacity)
    }

    /// RPUSH of the points (oldest first), then LTRIM to the newest `capacity`, in one MULTI so a
    /// reader never sees the list over its cap.
    public func append(_ points: [TrainerHistoryPoint], to redis: RedisConnection) throws {
        guard !points.isEmpty else { return }
        let values = try points.map { try $0.encoded() }
        let replies = try redis.pipeline([["MULTI"], ["RPUSH", key] + values, ["LTRIM", key, "-\(capacity)", "-1"], ["EXEC"]])
        for r in replies { _ = try r.throwingIfError() }
        // A command that fails inside MULTI (WRONGTYPE: the key is not a list) fails in EXEC's reply.
        guard let results = replies.last?.elements else { throw RedisError.protocol("EXEC of the history append was aborted") }
        for r in results { _ = try r.throwingIfError() }
    }

    /// The newest `limit` points, oldest first; lines that do not decode are skipped.
    public func read(from redis: RedisConnection, limit: Int = TrainerHistory.defaultCapacity) throws -> [TrainerHistoryPoint] {
        let reply = try redis.command(["LRANGE", key, "-\(max(1, limit))", "-1"]).throwingIfError()
        let decoder = JSONDecoder()
        return (reply.elements ?? []).compactMap { $0.text.flatMap { try? decoder.decode(TrainerHistoryPoint.self, from: Data($0.utf8)) } }
    }
}
