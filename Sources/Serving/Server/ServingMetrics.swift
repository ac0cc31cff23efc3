// Prometheus text exposition for the inference worker, written by hand (no metrics backend):
// counters and a latency histogram behind one lock, rendered on GET /metrics.
import Foundation
import Synchronization

/// The server's counters. Safe from any thread.
///
/// ```swift
/// metrics.recordRequest(endpoint: "/v1/predict", status: 200, seconds: 0.0012)
/// let text = metrics.render(model: slot.current)
/// ```
public final class ServingMetrics: Sendable {
    /// Upper bounds (seconds) of the request latency histogram buckets.
    public static let latencyBuckets: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

    struct Histogram {
        var buckets = [UInt64](repeating: 0, count: ServingMetrics.latencyBuckets.count)
        var count: UInt64 = 0
        var sum: Double = 0
    }

    struct State {
        var requests: [String: [Int: UInt64]] = [:]   // endpoint → status → count
        var latency: [String: Histogram] = [:]        // endpoint → histogram
        var rowsPredicted: UInt64 = 0
        var recommendations: [String: UInt64] = [:]   // source → users answered
        var reloads: UInt64 = 0
        var rejectedCheckpoints: UInt64 = 0
        var rejectedByReason: [String: UInt64] = [:]
        var timedOut: [String: UInt64] = [:]          // phase → connections closed
        var lastLoadSeconds: Double = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func recordRequest(endpoint: String, status: Int, seconds: Double) {
        state.withLock { s in
            s.requests[endpoint, default: [:]][status, default: 0] += 1
            var h = s.latency[endpoint] ?? Histogram()
            for (i, b) in Self.latencyBuckets.enumerated() where seconds <= b { h.buckets[i] += 1 }
            h.count += 1
            h.sum += seconds
            s.latency[endpoint] = h
        }
    }

    public func recordRows(_ n: Int) { state.withLock { $0.rowsPredicted += UInt64(n) } }
    /// Users answered by /v1/recommend, by `source` (`model`, `popular`).
    public func recordRecommendations(model: Int, popular: Int) {
        state.withLock { s in
            if model > 0 { s.recommendations["model", default: 0] += UInt64(model) }
            if popular > 0 { s.recommendations["popular", default: 0] += UInt64(popular) }
        }
    }
    public func recommendations(source: String) -> UInt64 { state.withLock { $0.recommendations[source] ?? 0 } }
    public func recordReload(loadSeconds: Double) {
        state.withLock { $0.reloads += 1; $0.lastLoadSeconds = loadSeconds }
    }
    /// `reason`: `invalid_checkpoint` (failed verification or load), `invalid_latest` (LATEST is
    /// not a version name), `outside_root` (the version resolves outside the checkpoints root),
    /// `kind_changed` (the version holds another model kind than the one being served).
    public func recordRejectedCheckpoint(reason: String) {
        state.withLock { $0.rejectedCheckpoints += 1; $0.rejectedByReason[reason, default: 0] += 1 }
    }
    /// A connection closed because its request head (`header`) or body (`body`) was too slow.
    public func recordTimedOutConnection(phase: String) { state.withLock { $0.timedOut[phase, default: 0] += 1 } }

    public var reloads: UInt64 { state.withLock { $0.reloads } }
    public var rejectedCheckpoints: UInt64 { state.withLock { $0.rejectedCheckpoints } }
    public func rejectedCheckpoints(reason: String) -> UInt64 { state.withLock { $0.rejectedByReason[reason] ?? 0 } }
    public func timedOutConnections(phase: String) -> UInt64 { state.withLock { $0.timedOut[phase] ?? 0 } }
    public func requests(endpoint: String, status: Int) -> UInt64 {
        state.withLock { $0.requests[endpoint]?[status] ?? 0 }
    }

    /// Prometheus text format 0.0.4.
    public func render(model: (any ServableModel)?) -> String {
        let s = state.withLock { $0 }
        var out = ""
        func line(_ text: String) { out += text; out += "\n" }
        line("# HELP streamrec_serve_requests_total HTTP requests answered, by endpoint and status code.")
        line("# TYPE streamrec_serve_requests_total counter")
        for endpoint in s.requests.keys.sorted() {
            for (status, n) in s.requests[endpoint]!.sorted(by: { $0.key < $1.key }) {
                line("streamrec_serve_requests_total{endpoint=\"\(endpoint)\",status=\"\(status)\"} \(n)")
            }
        }
        line("# HELP streamrec_serve_request_duration_seconds Time from request received to response ready.")
        line("# TYPE streamrec_serve_request_duration_seconds histogram")
        for endpoint in s.latency.keys.sorted() {
            let h = s.latency[endpoint]!
            for (i, b) in Self.latencyBuckets.enumerated() {
                line("streamrec_serve_request_duration_seconds_bucket{endpoint=\"\(endpoint)\",le=\"\(b)\"} \(h.buckets[i])")
            }
            line("streamrec_serve_request_duration_seconds_bucket{endpoint=\"\(endpoint)\",le=\"+Inf\"} \(h.count)")
            line("streamrec_serve_request_duration_seconds_sum{endpoint=\"\(endpoint)\"} \(h.sum)")
            line("streamrec_serve_request_duration_seconds_count{endpoint=\"\(endpoint)\"} \(h.count)")
        }
        line("# HELP streamrec_serve_rows_predicted_total Rows scored by /v1/predict.")
        line("# TYPE streamrec_serve_rows_predicted_total counter")
        line("streamrec_serve_rows_predicted_total \(s.rowsPredicted)")
        line("# HELP streamrec_serve_recommendations_total Users answered by /v1/recommend, by source (model: the served version's scores; popular: the real-time popular items).")
        line("# TYPE streamrec_serve_recommendations_total counter")
        for source in ["model", "popular"] {
            line("streamrec_serve_recommendations_total{source=\"\(source)\"} \(s.recommendations[source] ?? 0)")
        }
        line("# HELP streamrec_serve_reloads_total Model versions loaded and swapped in (the first load counts).")
        line("# TYPE streamrec_serve_reloads_total counter")
        line("streamrec_serve_reloads_total \(s.reloads)")
        line("# HELP streamrec_serve_rejected_checkpoints_total Checkpoint versions refused (corrupt, partial or incompatible).")
        line("# TYPE streamrec_serve_rejected_checkpoints_total counter")
        line("streamrec_serve_rejected_checkpoints_total \(s.rejectedCheckpoints)")
        line("# HELP streamrec_serve_rejected_checkpoints_by_reason_total Refusals by reason: invalid_checkpoint, invalid_latest (LATEST is not a version name), outside_root (resolves outside the checkpoints root), kind_changed (another model kind than the one served).")
        line("# TYPE streamrec_serve_rejected_checkpoints_by_reason_total counter")
        for reason in ["invalid_checkpoint", "invalid_latest", "outside_root", "kind_changed"] {
            line("streamrec_serve_rejected_checkpoints_by_reason_total{reason=\"\(reason)\"} \(s.rejectedByReason[reason] ?? 0)")
        }
        line("# HELP streamrec_serve_timed_out_connections_total Connections closed because a request head (header) or body (body) did not arrive in time.")
        line("# TYPE streamrec_serve_timed_out_connections_total counter")
        for phase in ["body", "header"] {
            line("streamrec_serve_timed_out_connections_total{phase=\"\(phase)\"} \(s.timedOut[phase] ?? 0)")
        }
        line("# HELP streamrec_serve_model_loaded 1 once a model is serving.")
        line("# TYPE streamrec_serve_model_loaded gauge")
        line("streamrec_serve_model_loaded \(model == nil ? 0 : 1)")
        line("# HELP streamrec_serve_model_step Training step of the model version being served.")
        line("# TYPE streamrec_serve_model_step gauge")
        line("streamrec_serve_model_step \(model?.step ?? -1)")
        line("# HELP streamrec_serve_model_info The model version being served (value is always 1).")
        line("# TYPE streamrec_serve_model_info gauge")
        if let model { line("streamrec_serve_model_info{version=\"\(model.version)\"} 1") }
        line("# HELP streamrec_serve_model_kind The model kind (manifest model_kind) being served (value is always 1).")
        line("# TYPE streamrec_serve_model_kind gauge")
        if let model { line("streamrec_serve_model_kind{kind=\"\(model.kind)\"} 1") }
        line("# HELP streamrec_serve_model_load_seconds Time the last successful load took (verify, load, warm-up).")
        line("# TYPE streamrec_serve_model_load_seconds gauge")
        line("streamrec_serve_model_load_seconds \(s.lastLoadSeconds)")
        return out
    }
}
