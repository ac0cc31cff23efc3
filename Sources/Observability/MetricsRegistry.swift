// One Prometheus registry behind swift-metrics.
//
// A process bootstraps `MetricsSystem` once with `MetricsRegistry.process` (featurize, the trainer's
// rank 0, serve); library code then creates its metrics with the plain swift-metrics types
// (`Counter(label:dimensions:)`, `Timer`, `Gauge`, `Recorder`, `Meter`), which stay no-ops in a
// process that never bootstraps (tests running engines in-process). `serve` also lets a test give
// each server its own registry (`ServingMetrics(registry:)`), since one test process runs many.
//
// Histogram buckets come from `MetricCatalogue` by name; `render()` is the Prometheus text format
// (0.0.4) with the catalogue's help lines added.
import CoreMetrics
import Foundation
import Metrics
import Prometheus

public final class MetricsRegistry: Sendable {
    public let prometheus: PrometheusCollectorRegistry
    /// The swift-metrics factory over `prometheus` (buckets per metric name from the catalogue).
    public let factory: PrometheusMetricsFactory

    public init() {
        prometheus = PrometheusCollectorRegistry()
        var f = PrometheusMetricsFactory(registry: prometheus)
        for m in Metric.all where m.kind == .histogram {
            let buckets = m.buckets ?? MetricBuckets.fast
            f.durationHistogramBuckets[m.name] = buckets.map { Duration.nanoseconds(Int64(($0 * 1e9).rounded())) }
            f.valueHistogramBuckets[m.name] = buckets
        }
        factory = f
    }

    /// The process's registry, bootstrapped into `MetricsSystem` on first use (exactly once: a
    /// second `MetricsSystem.bootstrap` would trap).
    public static let process: MetricsRegistry = {
        let r = MetricsRegistry()
        MetricsSystem.bootstrap(r.factory)
        return r
    }()

    /// Prometheus text format 0.0.4, families sorted by name, each with its catalogue help line.
    public func render() -> String {
        let text = prometheus.emitToString()
        // The registry emits families in dictionary order; group lines by family and sort, so
        // scrapes diff cleanly. A family starts at its `# TYPE` line.
        var families: [(name: String, lines: [Substring])] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# TYPE ") {
                let name = String(line.dropFirst(7).prefix { $0 != " " })
                families.append((name, [line]))
            } else if !families.isEmpty {
                families[families.count - 1].lines.append(line)
            }
        }
        let help = Dictionary(Metric.all.map { ($0.name, $0.help) }, uniquingKeysWith: { a, _ in a })
        var out = ""
        for family in families.sorted(by: { $0.name < $1.name }) {
            if let h = help[family.name] { out += "# HELP \(family.name) \(h.replacingOccurrences(of: "\\", with: "\\\\"))\n" }
            for line in family.lines { out += line; out += "\n" }
        }
        return out
    }
}
