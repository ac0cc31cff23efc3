// The training loop's metrics (coordinator only), through swift-metrics: no-ops unless the process
// bootstrapped a backend (`streamrec train --metrics-port`, rank 0). Names: `Observability.Metric`.
import Foundation
import Metrics
import Observability

final class TrainerMetrics: @unchecked Sendable {
    let step = Gauge(label: Metric.trainerStep.name)
    let samples = Counter(label: Metric.trainerSamples.name)
    let ranks = Gauge(label: Metric.trainerRanks.name)
    let compute = FloatingPointCounter(label: Metric.trainerStepSeconds.name, dimensions: [("phase", "compute")])
    let communication = FloatingPointCounter(label: Metric.trainerStepSeconds.name, dimensions: [("phase", "communication")])
    let dataWait = FloatingPointCounter(label: Metric.trainerStepSeconds.name, dimensions: [("phase", "data_wait")])
    let stepDuration = CoreMetrics.Timer(label: Metric.trainerStepDuration.name)
    let checkpointStall = CoreMetrics.Timer(label: Metric.trainerCheckpointStall.name)
    let checkpointWrite = CoreMetrics.Timer(label: Metric.trainerCheckpointWrite.name)
    let checkpoints = Counter(label: Metric.trainerCheckpoints.name)
    let lastCheckpointStep = Gauge(label: Metric.trainerLastCheckpointStep.name)
    /// One gauge per loss term / progressive figure, made as the model first reports it.
    private var terms: [String: Gauge] = [:]
    private let lock = NSLock()

    /// The model's `metrics`: keys ending in `_loss` are loss terms, the rest progressive figures.
    func record(modelMetrics: [String: Double]) {
        lock.withLock {
            for (key, value) in modelMetrics where value.isFinite {
                let gauge: Gauge
                if let g = terms[key] { gauge = g } else {
                    gauge = key.hasSuffix("_loss")
                        ? Gauge(label: Metric.trainerLoss.name, dimensions: [("term", key)])
                        : Gauge(label: Metric.trainerProgressive.name, dimensions: [("metric", key)])
                    terms[key] = gauge
                }
                gauge.record(value)
            }
        }
    }
}
