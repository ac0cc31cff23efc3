// A feature worker's metrics, through swift-metrics: no-ops unless the process bootstrapped a
// backend (`streamrec featurize --metrics-port`). Names and help: `Observability.Metric`.
//
// Threading: the counters and gauges are thread-safe; the worker thread, the parse threads, the
// committer and the grower all record into them.
import Features
import FeatureStore
import Foundation
import Metrics
import Observability

final class FeaturizeMetrics: @unchecked Sendable {
    let messages = Counter(label: Metric.featurizeMessages.name)
    let rows = Counter(label: Metric.featurizeRows.name)
    let batches = Counter(label: Metric.featurizeBatches.name)
    let lostUpstream = Counter(label: Metric.featurizeLostUpstream.name)
    let duplicateUnits = Counter(label: Metric.featurizeDuplicateUnits.name)
    let fencedUnits = Counter(label: Metric.featurizeFencedUnits.name)
    let offsetResets = Counter(label: Metric.featurizeOffsetResets.name)
    let leasesLost = Counter(label: Metric.featurizeLeasesLost.name)
    let leasesHeld = Gauge(label: Metric.featurizeLeasesHeld.name)
    let paused = Gauge(label: Metric.featurizePaused.name)
    let commitDuration = CoreMetrics.Timer(label: Metric.featurizeCommitDuration.name)
    let redis = OutageTracker(outages: Counter(label: Metric.featurizeRedisOutages.name), up: Gauge(label: Metric.featurizeRedisUp.name))
    let kafka = OutageTracker(outages: Counter(label: Metric.featurizeKafkaOutages.name), up: Gauge(label: Metric.featurizeKafkaUp.name))

    private let lock = NSLock()
    private var deadLetters: [String: Counter] = [:]
    private var lag: [Int32: Gauge] = [:]

    /// `reasons`: the input kind's rejection reasons, exposed at 0 from the start so a dashboard
    /// sees every series before the first bad row.
    init(reasons: [RejectReason]) {
        for r in reasons { _ = deadLetterCounter(r.rawValue) }
        paused.record(0)
        leasesHeld.record(0)
    }

    private func deadLetterCounter(_ reason: String) -> Counter {
        lock.withLock {
            if let c = deadLetters[reason] { return c }
            let c = Counter(label: Metric.featurizeDeadLetters.name, dimensions: [("reason", reason)])
            deadLetters[reason] = c
            return c
        }
    }

    /// Dead letters committed with one unit.
    func committed(deadLetters letters: [DeadLetter]) {
        guard !letters.isEmpty else { return }
        var byReason: [String: Int] = [:]
        for l in letters { byReason[l.reason, default: 0] += 1 }
        for (reason, n) in byReason { deadLetterCounter(reason).increment(by: n) }
    }

    /// Sets each owned partition's lag (nil: not known yet, the series keeps its last value or
    /// does not exist yet); partitions no longer owned lose their series.
    func setLag(_ lags: [Int32: Int64?]) {
        lock.withLock {
            for (p, g) in lag where lags[p] == nil { g.destroy(); lag[p] = nil }
            for (p, known) in lags {
                guard let value = known else { continue }
                let g = lag[p] ?? Gauge(label: Metric.featurizePartitionLag.name, dimensions: [("partition", String(p))])
                lag[p] = g
                g.record(max(0, value))
            }
        }
    }
}

/// Outages of one dependency (Redis, Kafka) seen by any of the worker's connections: an outage
/// starts when the first connection fails and ends when every failed one answers again, so three
/// connections failing at once count one outage.
final class OutageTracker: @unchecked Sendable {
    private let outages: Counter
    private let up: Gauge
    private let lock = NSLock()
    private var down: Set<ObjectIdentifier> = []

    init(outages: Counter, up: Gauge) {
        self.outages = outages; self.up = up
        up.record(1)
    }

    /// `who` (a connection) failed; counts an outage if it is the first one down.
    func failed(_ who: AnyObject) {
        lock.withLock {
            guard down.insert(ObjectIdentifier(who)).inserted else { return }
            if down.count == 1 { outages.increment(); up.record(0) }
        }
    }

    /// `who` answered again; the outage ends when no connection is down.
    func answered(_ who: AnyObject) {
        lock.withLock {
            guard down.remove(ObjectIdentifier(who)) != nil else { return }
            if down.isEmpty { up.record(1) }
        }
    }
}
