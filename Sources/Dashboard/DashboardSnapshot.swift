// What the dashboard shows, gathered in one pass from the running cluster's own records: the
// feature store (`FeatureStore.status`, as `streamrec status` reads it), the trainer's heartbeat
// and history in Redis (sr:train:status, sr:train:history), serve's GET /v1/model and
// GET /metrics, and the checkpoints directory. A source that does not answer leaves its part
// empty with the reason; the rest still shows.

import Checkpoint
import FeatureStore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Streaming

/// Everything one page shows (also served as JSON, `GET /dashboard.json`; keys in snake_case).
public struct DashboardSnapshot: Sendable, Codable {
    public struct Trainer: Sendable, Codable {
        public var step: Int
        public var samplesTrained: Int
        public var ranks: Int
        /// When rank 0 last wrote its heartbeat (ms since the epoch).
        public var updatedMs: Int64
        public init(step: Int, samplesTrained: Int, ranks: Int, updatedMs: Int64) {
            self.step = step; self.samplesTrained = samplesTrained; self.ranks = ranks; self.updatedMs = updatedMs
        }
        enum CodingKeys: String, CodingKey { case step, ranks, samplesTrained = "samples_trained", updatedMs = "updated_ms" }
    }

    public struct Served: Sendable, Codable {
        public var modelKind: String
        public var modelVersion: String
        public var step: Int
        public var samplesTrained: Int
        /// The checkpoint's metrics (its manifest's).
        public var metrics: [String: Double]
        public var loadedAt: String
        public init(modelKind: String, modelVersion: String, step: Int, samplesTrained: Int, metrics: [String: Double], loadedAt: String) {
            self.modelKind = modelKind; self.modelVersion = modelVersion; self.step = step; self.samplesTrained = samplesTrained; self.metrics = metrics; self.loadedAt = loadedAt
        }
        enum CodingKeys: String, CodingKey {
            case step, metrics
            case modelKind = "model_kind", modelVersion = "model_version", samplesTrained = "samples_trained", loadedAt = "loaded_at"
        }
    }

    public struct Checkpoint: Sendable, Codable {
        public var version: String
        public var step: Int
        public var createdAt: String?
        public var samplesTrained: Int?
        public var latest: Bool
        public var metrics: [String: Double]
        public var problem: String?
        public init(version: String, step: Int, createdAt: String?, samplesTrained: Int?, latest: Bool, metrics: [String: Double], problem: String?) {
            self.version = version; self.step = step; self.createdAt = createdAt; self.samplesTrained = samplesTrained; self.latest = latest; self.metrics = metrics; self.problem = problem
        }
        enum CodingKeys: String, CodingKey {
            case version, step, latest, metrics, problem
            case createdAt = "created_at", samplesTrained = "samples_trained"
        }
    }

    public var generatedMs: Int64
    /// The Redis address (password masked) and key prefix.
    public var redis: String
    public var prefix: String
    public var cluster: FeatureStoreStatus?
    public var clusterError: String?
    /// Why there is no lag column (no --topic given, Kafka not reachable).
    public var lagNote: String?
    public var trainer: Trainer?
    public var history: [TrainerHistoryPoint] = []
    public var trainerError: String?
    public var serveURL: String?
    public var served: Served?
    /// Selected samples of serve's /metrics (name{labels} → value).
    public var serveMetrics: [String: Double] = [:]
    public var serveError: String?
    public var checkpointsSource: String
    public var checkpoints: [Checkpoint] = []
    public var checkpointsError: String?

    enum CodingKeys: String, CodingKey {
        case redis, prefix, cluster, trainer, history, served, checkpoints
        case generatedMs = "generated_ms", clusterError = "cluster_error", lagNote = "lag_note", trainerError = "trainer_error"
        case serveURL = "serve_url", serveMetrics = "serve_metrics", serveError = "serve_error"
        case checkpointsSource = "checkpoints_source", checkpointsError = "checkpoints_error"
    }

    public init(generatedMs: Int64, redis: String, prefix: String, cluster: FeatureStoreStatus? = nil, serveURL: String? = nil,
                checkpointsSource: String) {
        self.generatedMs = generatedMs; self.redis = redis; self.prefix = prefix; self.cluster = cluster
        self.serveURL = serveURL; self.checkpointsSource = checkpointsSource
    }

    /// The newest history point.
    public var latest: TrainerHistoryPoint? { history.last }
}

/// Where the dashboard reads from.
public struct DashboardSources: Sendable {
    public var redis: RedisEndpoint
    public var prefix: String
    /// serve's base URL (e.g. http://127.0.0.1:8080); nil = no serving section.
    public var serve: URL?
    /// The checkpoints root; nil = the versions the trainer's history names.
    public var checkpoints: URL?
    /// History points read per refresh (the newest).
    public var historyLimit = 2000
    public init(redis: RedisEndpoint, prefix: String, serve: URL?, checkpoints: URL?) {
        self.redis = redis; self.prefix = prefix; self.serve = serve; self.checkpoints = checkpoints
    }
}

/// Gathers snapshots. Used from one thread at a time: the refresher's (`DashboardRefresher`)
/// once it is handed over, hence the unchecked Sendable.
public final class DashboardCollector: @unchecked Sendable {
    public let sources: DashboardSources
    /// Adds Kafka watermarks and lag to the status (the CLI's `--topic`); returns a note when it
    /// cannot. Nil: no lag column.
    public var partitionLag: ((inout FeatureStoreStatus, FeatureStore) -> String?)?
    private var connection: RedisConnection?

    public init(sources: DashboardSources) { self.sources = sources }

    public func collect() -> DashboardSnapshot {
        var snap = DashboardSnapshot(generatedMs: Int64(Date().timeIntervalSince1970 * 1000), redis: sources.redis.description,
                                     prefix: sources.prefix, serveURL: sources.serve?.absoluteString,
                                     checkpointsSource: sources.checkpoints?.path ?? "the trainer's history (no --checkpoints)")
        collectRedis(&snap)
        if let serve = sources.serve { collectServe(serve, &snap) }
        collectCheckpoints(&snap)
        return snap
    }

    // MARK: Redis: feature store, trainer heartbeat and history

    private func collectRedis(_ snap: inout DashboardSnapshot) {
        let redis: RedisConnection
        do {
            if connection == nil { connection = try RedisConnection(address: sources.redis, timeout: .seconds(2)) }
            redis = connection!
        } catch {
            snap.clusterError = "Redis at \(sources.redis) not reachable: \(error)"
            snap.trainerError = snap.clusterError
            return
        }
        let store = FeatureStore(redis: redis, prefix: sources.prefix)
        let layout = FeatureStoreLayout(prefix: sources.prefix)
        do {
            var status = try store.status()
            if let partitionLag { snap.lagNote = partitionLag(&status, store) } else {
                snap.lagNote = "lag needs the Kafka topic: start the dashboard with --topic NAME"
            }
            snap.cluster = status
        } catch {
            snap.clusterError = "reading the feature store failed: \(error)"
            dropConnection(after: error)
        }
        do {
            if let text = try redis.command(["GET", layout.trainerStatus]).text,
               let obj = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
                snap.trainer = .init(step: (obj["step"] as? NSNumber)?.intValue ?? 0,
                                     samplesTrained: (obj["samples_trained"] as? NSNumber)?.intValue ?? 0,
                                     ranks: (obj["ranks"] as? NSNumber)?.intValue ?? 0,
                                     updatedMs: (obj["updated_ms"] as? NSNumber)?.int64Value ?? 0)
            }
            snap.history = try TrainerHistory(layout: layout).read(from: redis, limit: sources.historyLimit)
            if snap.trainer == nil, snap.history.isEmpty {
                snap.trainerError = "no trainer has reported under prefix \(sources.prefix) yet (\(layout.trainerStatus), \(layout.trainerHistory))"
            }
        } catch {
            snap.trainerError = "reading the trainer's records failed: \(error)"
            dropConnection(after: error)
        }
    }

    private func dropConnection(after error: Error) {
        if let e = error as? RedisError, e.isOutage { connection = nil }
    }

    // MARK: serve: /v1/model and /metrics

    /// The /metrics samples the page shows (a name matches with any labels).
    static let servedMetricNames = ["streamrec_serve_requests_total", "streamrec_serve_reloads_total",
                                    "streamrec_serve_rejected_checkpoints_total", "streamrec_serve_rows_predicted_total",
                                    "streamrec_serve_recommendations_total", "streamrec_serve_model_load_seconds",
                                    "streamrec_serve_request_duration_seconds_sum", "streamrec_serve_request_duration_seconds_count",
                                    "streamrec_serve_timed_out_connections_total"]

    private func collectServe(_ base: URL, _ snap: inout DashboardSnapshot) {
        do {
            let (status, body) = try httpGet(base.appendingPathComponent("v1/model"))
            if status == 200 {
                snap.served = try JSONDecoder().decode(DashboardSnapshot.Served.self, from: body)
            } else {
                snap.serveError = "GET /v1/model answered \(status): "
                    + String(decoding: body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let (mstatus, metrics) = try httpGet(base.appendingPathComponent("metrics"))
            if mstatus == 200 {
                snap.serveMetrics = Self.parsePrometheus(String(decoding: metrics, as: UTF8.self), names: Self.servedMetricNames)
            }
        } catch {
            snap.serveError = "serve at \(base.absoluteString) not reachable: \(error)"
        }
    }

    /// Samples `name{labels} value` of the named metrics (comments and other names skipped).
    public static func parsePrometheus(_ text: String, names: [String]) -> [String: Double] {
        var out: [String: Double] = [:]
        for raw in text.split(separator: "\n") where !raw.hasPrefix("#") {
            guard let space = raw.lastIndex(of: " "), let value = Double(raw[raw.index(after: space)...]) else { continue }
            let key = String(raw[..<space])
            let name = key.prefix { $0 != "{" }
            if names.contains(String(name)) { out[key] = value }
        }
        return out
    }

    private func httpGet(_ url: URL) throws -> (Int, Data) {
        var request = URLRequest(url: url)
        request.timeoutInterval = 2
        let box = Response()
        let done = DispatchSemaphore(value: 0)
        let task = URLSession.shared.dataTask(with: request) { data, response, error in
            box.data = data; box.status = (response as? HTTPURLResponse)?.statusCode; box.error = error
            done.signal()
        }
        task.resume()
        if done.wait(timeout: .now() + 3) == .timedOut {
            task.cancel()
            throw DashboardError("no answer within 3 s")
        }
        if let error = box.error { throw DashboardError(error.localizedDescription) }
        return (box.status ?? 0, box.data ?? Data())
    }

    private final class Response: @unchecked Sendable {
        var data: Data?, status: Int?, error: Error?
    }

    // MARK: Checkpoints

    private func collectCheckpoints(_ snap: inout DashboardSnapshot) {
        guard let dir = sources.checkpoints else {
            // The versions the trainer recorded, each with the first point that named it.
            var seen = Set<String>()
            for p in snap.history {
                guard let v = p.checkpoint, !seen.contains(v) else { continue }
                seen.insert(v)
                snap.checkpoints.append(.init(version: v, step: CheckpointStore.step(fromDirectoryName: v) ?? 0,
                                              createdAt: Self.iso8601(ms: p.timeMs), samplesTrained: nil, latest: false,
                                              metrics: [:], problem: nil))
            }
            if !snap.checkpoints.isEmpty { snap.checkpoints[snap.checkpoints.count - 1].latest = true }
            return
        }
        guard FileManager.default.fileExists(atPath: dir.path) else {
            snap.checkpointsError = "no checkpoints directory \(dir.path) yet"
            return
        }
        snap.checkpoints = CheckpointStore(directory: dir, keep: Int.max).list().map {
            .init(version: $0.url.lastPathComponent, step: $0.step, createdAt: $0.manifest?.createdAt,
                  samplesTrained: $0.manifest?.samplesTrained, latest: $0.isLatest,
                  metrics: ($0.manifest?.metrics ?? [:]).filter { $0.value.isFinite }, problem: $0.problem)
        }
    }

    static func iso8601(ms: Int64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}

public struct DashboardError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
