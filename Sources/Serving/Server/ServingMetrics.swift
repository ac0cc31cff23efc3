// The inference worker's metrics, on swift-metrics with the Prometheus registry behind it
// (`Observability`): counters, the latency and freshness histograms and the served version's
// gauges, rendered on GET /metrics. Names and help live in `Observability.Metric`.
import Foundation
import Metrics
import Observability
import Synchronization

/// The server's metrics. Safe from any thread.
///
/// ```swift
/// metrics.recordRequest(endpoint: "/v1/predict", status: 200, seconds: 0.0012)
/// let text = metrics.render(model: slot.current)
/// ```
///
/// Each instance writes to its own `MetricsRegistry` (by default a new one, so servers in one test
/// process do not share counts); `streamrec serve` passes the process's registry.
public final class ServingMetrics: Sendable {
    /// Upper bounds (seconds) of the request latency histogram buckets.
    public static let latencyBuckets: [Double] = MetricBuckets.requests
    /// The `reason`s of refused checkpoints (each exposed from the start, at 0).
    public static let rejectionReasons = ["invalid_checkpoint", "invalid_latest", "outside_root", "kind_changed"]

    public let registry: MetricsRegistry
    private let rowsPredicted: Counter
    private let reloadCounter: Counter
    private let modelLoaded: Gauge
    private let modelStep: Gauge
    private let loadSeconds: Gauge
    private let newestEvent: Gauge
    private let freshness: Recorder
    /// Per-label metrics, made on first use (the label sets are bounded: known routes, status codes).
    private let labelled = Mutex<[String: Counter]>([:])
    private let timers = Mutex<[String: CoreMetrics.Timer]>([:])
    /// The served version's info series (replaced when the version changes).
    private let info = Mutex<(key: String, gauge: Gauge)?>(nil)

    public init(registry: MetricsRegistry = MetricsRegistry()) {
        self.registry = registry
        let f = registry.factory
        rowsPredicted = Counter(label: Metric.serveRowsPredicted.name, factory: f)
        reloadCounter = Counter(label: Metric.serveReloads.name, factory: f)
        modelLoaded = Gauge(label: Metric.serveModelLoaded.name, factory: f)
        modelStep = Gauge(label: Metric.serveModelStep.name, factory: f)
        loadSeconds = Gauge(label: Metric.serveModelLoadSeconds.name, factory: f)
        newestEvent = Gauge(label: Metric.serveModelNewestEvent.name, factory: f)
        freshness = Recorder(label: Metric.serveFreshness.name, factory: f)
        modelStep.record(-1)
        for source in ["model", "popular"] { _ = counter(Metric.serveRecommendations, ["source": source]) }
        for reason in Self.rejectionReasons { _ = counter(Metric.serveRejectedCheckpoints, ["reason": reason]) }
        for phase in ["body", "header"] { _ = counter(Metric.serveTimedOutConnections, ["phase": phase]) }
    }

    private func counter(_ m: MetricDefinition, _ labels: [String: String]) -> Counter {
        // Label order as the catalogue lists them, so series read the same in every scrape.
        let dims = m.labels.compactMap { k in labels[k].map { (k, $0) } }
        let key = m.name + "|" + dims.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        return labelled.withLock { all in
            if let c = all[key] { return c }
            let c = Counter(label: m.name, dimensions: dims, factory: registry.factory)
            all[key] = c
            return c
        }
    }

    public func recordRequest(endpoint: String, status: Int, seconds: Double) {
        counter(Metric.serveRequests, ["endpoint": endpoint, "status": String(status)]).increment()
        let timer = timers.withLock { all in
            if let t = all[endpoint] { return t }
            let t = CoreMetrics.Timer(label: Metric.serveRequestDuration.name, dimensions: [("endpoint", endpoint)], factory: registry.factory)
            all[endpoint] = t
            return t
        }
        timer.recordSeconds(seconds)
    }

    public func recordRows(_ n: Int) { rowsPredicted.increment(by: n) }
    /// Users answered by /v1/recommend, by `source` (`model`, `popular`).
    public func recordRecommendations(model: Int, popular: Int) {
        if model > 0 { counter(Metric.serveRecommendations, ["source": "model"]).increment(by: model) }
        if popular > 0 { counter(Metric.serveRecommendations, ["source": "popular"]).increment(by: popular) }
    }
    public func recommendations(source: String) -> UInt64 {
        UInt64(scrape().value(Metric.serveRecommendations.name, ["source": source]) ?? 0)
    }
    /// A version was loaded and swapped in: counts it, sets the served version's gauges and
    /// observes its freshness (now − when its newest trained batch was produced, if the manifest says).
    public func recordReload(model: any ServableModel, now: Date = Date()) {
        reloadCounter.increment()
        loadSeconds.record(model.info.loadSeconds)
        if let produced = model.info.newestEventProducedMs, produced > 0 {
            newestEvent.record(Double(produced) / 1000)
            freshness.record(max(0, now.timeIntervalSince1970 - Double(produced) / 1000))
        } else {
            newestEvent.record(0)
        }
        observe(model)
    }
    /// `reason`: `invalid_checkpoint` (failed verification or load), `invalid_latest` (LATEST is
    /// not a version name), `outside_root` (the version resolves outside the checkpoints root),
    /// `kind_changed` (the version holds another model kind than the one being served).
    public func recordRejectedCheckpoint(reason: String) {
        counter(Metric.serveRejectedCheckpoints, ["reason": reason]).increment()
    }
    /// A connection closed because its request head (`header`) or body (`body`) was too slow.
    public func recordTimedOutConnection(phase: String) { counter(Metric.serveTimedOutConnections, ["phase": phase]).increment() }

    /// The metrics as a scrape shows them (the query methods below read them back from it).
    func scrape() -> PrometheusText { (try? PrometheusText(registry.render())) ?? .empty }

    public var reloads: UInt64 { UInt64(scrape().value(Metric.serveReloads.name) ?? 0) }
    public var rejectedCheckpoints: UInt64 { UInt64(scrape().value(Metric.serveRejectedCheckpoints.name) ?? 0) }
    public func rejectedCheckpoints(reason: String) -> UInt64 {
        UInt64(scrape().value(Metric.serveRejectedCheckpoints.name, ["reason": reason]) ?? 0)
    }
    public func timedOutConnections(phase: String) -> UInt64 {
        UInt64(scrape().value(Metric.serveTimedOutConnections.name, ["phase": phase]) ?? 0)
    }
    public func requests(endpoint: String, status: Int) -> UInt64 {
        UInt64(scrape().value(Metric.serveRequests.name, ["endpoint": endpoint, "status": String(status)]) ?? 0)
    }

    /// Sets the served version's gauges (loaded, step, info) from `model`.
    func observe(_ model: (any ServableModel)?) {
        modelLoaded.record(model == nil ? 0 : 1)
        modelStep.record(model?.step ?? -1)
        let key = model.map { "\($0.version)|\($0.kind)" } ?? ""
        info.withLock { current in
            guard current?.key != key else { return }
            current?.gauge.destroy()   // the old version's series goes away
            current = nil
            if let model {
                let g = Gauge(label: Metric.serveModelInfo.name, dimensions: [("version", model.version), ("kind", model.kind)],
                              factory: registry.factory)
                g.record(1)
                current = (key, g)
            }
        }
    }

    /// Prometheus text format 0.0.4 (the served version's gauges brought up to date first).
    public func render(model: (any ServableModel)?) -> String {
        observe(model)
        return registry.render()
    }
}
