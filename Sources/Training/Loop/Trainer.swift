import Logging
import Foundation
import Checkpoint
import Features
import Models
import StreamRecNumerics

/// What every participant learns about a step before computing it (summed over ranks).
public struct StepSignals: Sendable, Equatable {
    /// Samples in this step's local batches.
    public var samples: Int
    /// Participants whose source is not exhausted.
    public var active: Int
    /// Participants asked to stop (SIGTERM, --until-idle).
    public var stop: Int
    /// Joiners waiting to be admitted (reported by rank 0).
    public var joinWaiting: Int
    /// Participants asking to leave the job at this boundary.
    public var leaving: Int
    /// Participants with a non-empty batch this step.
    public var contributors: Int
    /// Participants whose --until-idle timer ran out. Decided collectively, because each
    /// rank's clock reads a little differently: a local decision would split the job.
    public var idle: Int = 0

    public init(samples: Int = 0, active: Int = 0, stop: Int = 0, joinWaiting: Int = 0, leaving: Int = 0) {
        self.samples = samples
        self.active = active
        self.stop = stop
        self.joinWaiting = joinWaiting
        self.leaving = leaving
        self.contributors = samples > 0 ? 1 : 0
    }

    var vector: [Float] { [Float(samples), Float(active), Float(stop), Float(joinWaiting), Float(leaving), Float(contributors), Float(idle)] }
    init(vector v: [Float]) {
        self.init(samples: Int(v[0]), active: Int(v[1]), stop: Int(v[2]), joinWaiting: Int(v[3]), leaving: Int(v[4]))
        contributors = Int(v[5])
        idle = Int(v[6])
    }
}

/// A batch the trainer cannot train on (it reached the trainer past the codec's checks).
public enum TrainerError: Error, CustomStringConvertible {
    case incompatibleBatch(String)
    public var description: String {
        switch self { case .incompatibleBatch(let m): return "incompatible feature batch: \(m)" }
    }
}

public struct TrainSummary: Sendable {
    public var steps: Int
    public var samples: Int
    public var seconds: Double
    /// The model's last loss terms and progressive-validation figures (`TrainableModel.metrics`).
    public var metrics: [String: Double]
    public var lastCheckpoint: URL?
    public var rejected: Int
    /// Seconds the trainer thread spent taking checkpoint snapshots (the training stall).
    public var checkpointStallSeconds: Double
    /// Seconds spent in gradient exchange (allreduce + allgatherv + step agreement).
    public var communicationSeconds: Double
    public var computeSeconds: Double
    public var stopReason: String

    // Wide&Deep's figures.
    public var progressiveAUC: Double? { metrics["pv_auc"] }
    public var progressiveLogLoss: Double { metrics["pv_logloss"] ?? 0 }
    public var lastWideLoss: Double { metrics["wide_loss"] ?? 0 }
    public var lastDeepLoss: Double { metrics["deep_loss"] ?? 0 }
}

/// What the coordinator reports every `logEvery` steps, beside its log line (the online trainer
/// records it in the feature store's history for the dashboard).
public struct TrainerProgress: Sendable {
    public var step: Int
    /// Samples trained so far (all participants).
    public var samples: Int
    public var epoch: Int
    /// Over the steps since the previous report.
    public var samplesPerSecond: Double
    /// `TrainableModel.metrics`: loss terms and progressive-validation figures.
    public var metrics: [String: Double]
}

/// What a step boundary did to the membership of the job.
public enum BoundaryOutcome: Sendable {
    /// Nothing changed: run the step.
    case unchanged
    /// Ranks joined or left: the step's local batches are dropped (not trained, positions not
    /// advanced, so their shards' new owners read them again) and the step is agreed anew.
    case changed
    /// This participant left the job.
    case left
}

/// Hooks the MPI launcher plugs into the loop (dynamic join, leaving, shard reassignment).
public protocol StepBoundaryHandler: AnyObject {
    /// Called on every participant after the step agreement when a join or leave is pending;
    /// may replace the exchange's communicator and reassign shards.
    func handle(_ agreed: StepSignals, trainer: Trainer) throws -> BoundaryOutcome
    /// Rank 0's view: joiners waiting right now (polled once per step).
    func joinersWaiting() -> Int
    /// Whether this participant wants to leave at the next boundary.
    func wantsToLeave() -> Bool
}

/// The training loop shared by every model family and every way of running StreamRec: agree on
/// the step, let the model train on it (`TrainableModel.trainStep`: progressive validation,
/// gradients, collectives, the identical update), log, checkpoint every N steps (coordinator,
/// in the background) and when stopping.
public final class Trainer {
    public let model: any TrainableModel
    public let settings: TrainSettings
    public let source: BatchSource
    public let collectives: Collectives
    public let store: CheckpointStore?
    public let logger: Logger
    public var samplesTrained: Int
    /// Stream positions trained up to, replicated on every rank (see `positionsExchange`).
    public var positions: [String: String] = [:]
    /// Stop once no rank has had data for this long (seconds); nil = run until exhausted/stopped.
    public var untilIdle: Double?
    /// A collective (step agreement, the step's exchange) that has not completed for this long
    /// ends the rank (`CollectiveWatchdog`); nil = wait forever. Only for more than one participant.
    public var peerTimeout: Duration?
    /// Names this participant in the watchdog's message (e.g. "rank 1/2").
    public var participantName: () -> String = { "rank" }
    /// Polled every step; true asks the job to stop at this boundary (e.g. SIGTERM).
    public var stopRequested: () -> Bool = { false }
    public weak var boundaryHandler: StepBoundaryHandler?
    /// Called on every participant after each applied step with its local batch (nil if it had
    /// none), e.g. to replicate Redis stream positions into `positions`.
    public var afterStep: ((SourcedBatch?) throws -> Void)?
    /// Called (rank 0) after each checkpoint snapshot is handed to the writer.
    public var afterCheckpoint: (() -> Void)?
    /// Called (coordinator, trainer thread) every `logEvery` steps, after the log line.
    public var onProgress: ((TrainerProgress) -> Void)?
    /// Called on the writer thread once a checkpoint version is in place (step, directory).
    public var onCheckpointWritten: (@Sendable (Int, URL) -> Void)?
    public var wallTimeBefore: Double
    /// When the newest batch trained so far was produced (its oldest event, ms since the epoch;
    /// nil while unknown), recorded in each checkpoint for serve's freshness histogram. Updated
    /// from this participant's batches; `OnlineTrainer` adds every rank's (rank 0 writes).
    public var newestEventProducedMs: Int64?
    private var writer: CheckpointWriter?
    let metrics = TrainerMetrics()

    public init(model: any TrainableModel, settings: TrainSettings, source: BatchSource,
                collectives: Collectives = LocalCollectives(), store: CheckpointStore?,
                samplesTrained: Int = 0, wallTimeBefore: Double = 0, logger: Logger) {
        self.model = model
        self.settings = settings
        self.source = source
        self.collectives = collectives
        self.store = store
        self.samplesTrained = samplesTrained
        self.wallTimeBefore = wallTimeBefore
        self.logger = logger
    }

    /// A Wide&Deep trainer (`WideDeepTraining` around `model`).
    public convenience init(model: WideDeepModel, stats: FeatureStats, settings: TrainSettings, source: BatchSource,
                            collectives: Collectives = LocalCollectives(), store: CheckpointStore?,
                            samplesTrained: Int = 0, wallTimeBefore: Double = 0, logger: Logger) {
        self.init(model: WideDeepTraining(model: model, stats: stats, batchSize: settings.batchSize), settings: settings,
                  source: source, collectives: collectives, store: store, samplesTrained: samplesTrained,
                  wallTimeBefore: wallTimeBefore, logger: logger)
    }

    public func run() throws -> TrainSummary {
        if collectives.isCoordinator, let store {
            writer = CheckpointWriter(store: store, logger: logger)
            let user = onCheckpointWritten, metrics = self.metrics
            writer?.onWritten = { [weak writer] step, url in
                metrics.checkpoints.increment()
                metrics.lastCheckpointStep.record(step)
                if let seconds = writer?.written.last?.seconds { metrics.checkpointWrite.recordSeconds(seconds) }
                user?(step, url)
            }
        }
        let coordinator = collectives.isCoordinator
        if coordinator { metrics.step.record(model.step); metrics.ranks.record(collectives.participants) }
        var lastModelMetrics = Date.distantPast
        let start = Date()
        var windowStart = Date(), windowSamples = 0
        var steps = 0
        var lastCheckpointStep = -1, stall = 0.0, comm = 0.0, compute = 0.0
        var lastData = Date()
        var lastReportedStep = -1, lastStepAt = Date()
        var epoch = 1
        var exhausted = false
        var leftJob = false
        var stopReason = "input exhausted"
        let watchdog = peerTimeout.map { CollectiveWatchdog(timeout: $0, logger: logger) }
        defer { watchdog?.stop() }
        func watched<T>(_ body: () throws -> T) rethrows -> T {
            guard let watchdog, collectives.participants > 1 else { return try body() }
            return try watchdog.watch(as: participantName(), body)
        }
        while true {
            // 1. What this participant has for the step.
            var local: SourcedBatch?
            // data_wait: the iteration's time that was not the agreement, the step or a checkpoint.
            let tPoll = Date()
            var stepSeconds = 0.0
            defer { if coordinator { metrics.dataWait.increment(by: max(0, Date().timeIntervalSince(tPoll) - stepSeconds)) } }
            if !exhausted {
                switch try source.poll(timeout: 0.05) {
                case .batch(let b): local = b
                case .idle: break
                case .exhausted: exhausted = true
                }
            }
            if source.isWaitingForUpstream { lastData = Date() }   // an outage is not idleness
            let wantsStop = stopRequested()
            var signals = StepSignals(samples: local?.count ?? 0, active: exhausted ? 0 : 1, stop: wantsStop ? 1 : 0)
            if let untilIdle, local == nil, Date().timeIntervalSince(lastData) >= untilIdle { signals.idle = 1 }
            if let h = boundaryHandler {
                if collectives.isCoordinator { signals.joinWaiting = h.joinersWaiting() }
                signals.leaving = h.wantsToLeave() ? 1 : 0
            }
            let t0 = Date()
            let agreed = try watched { try collectives.agree(signals) }
            comm += Date().timeIntervalSince(t0)
            if coordinator {
                metrics.communication.increment(by: Date().timeIntervalSince(t0))
                stepSeconds += Date().timeIntervalSince(t0)
                metrics.ranks.record(collectives.participants)
            }
            if agreed.stop > 0 { stopReason = "stop requested"; break }
            // Stop only when no rank had a batch this step: a batch polled by one rank and
            // dropped here would still be safe (positions unchanged), but this keeps it simple.
            if agreed.idle > 0 && agreed.samples == 0 { stopReason = "idle for \(untilIdle ?? 0)s"; break }
            if let h = boundaryHandler, agreed.joinWaiting > 0 || agreed.leaving > 0 {
                switch try h.handle(agreed, trainer: self) {
                case .unchanged: break
                case .changed: continue
                case .left: stopReason = "left the job"; leftJob = true
                }
                if leftJob { break }
            }
            if agreed.samples == 0 {
                if agreed.active == 0 { break }
                if local == nil && !exhausted { usleep(20_000) }
                continue
            }
            lastData = Date()

            // 2. The step: the model's forward/backward, collectives and identical update.
            if let local { try model.check(local) }
            if let e = local?.epoch { epoch = e }
            if let p = local?.positions { positions.merge(p) { $1 } }
            let timing = try watched {
                try model.trainStep(local, totalSamples: agreed.samples, contributors: agreed.contributors, collectives: collectives)
            }
            compute += timing.compute
            comm += timing.communication
            if let produced = local?.producedAtMs, produced > 0, produced > (newestEventProducedMs ?? 0) { newestEventProducedMs = produced }
            try watched { try afterStep?(local) }
            samplesTrained += agreed.samples
            if coordinator {
                metrics.compute.increment(by: timing.compute)
                metrics.communication.increment(by: timing.communication)
                metrics.stepDuration.recordSeconds(timing.compute + timing.communication)
                stepSeconds += timing.compute + timing.communication
                metrics.step.record(model.step)
                metrics.samples.increment(by: agreed.samples)
                // At most once a second: a model's metrics may be costly (Wide&Deep's progressive
                // AUC sorts its 100k-row window), and a scrape comes every few seconds.
                if Date().timeIntervalSince(lastModelMetrics) >= 1 {
                    metrics.record(modelMetrics: model.metrics)
                    lastModelMetrics = Date()
                }
            }
            windowSamples += agreed.samples
            steps += 1
            lastStepAt = Date()
            if collectives.isCoordinator && (model.step % max(settings.logEvery, 1) == 0) {
                let dt = Date().timeIntervalSince(windowStart)
                logger.info("\(model.logLine(epoch: epoch, samplesPerSecond: Double(windowSamples) / max(dt, 1e-9)))")
                onProgress?(TrainerProgress(step: model.step, samples: samplesTrained, epoch: epoch,
                                            samplesPerSecond: Double(windowSamples) / max(dt, 1e-9), metrics: model.metrics))
                lastReportedStep = model.step
                windowStart = Date(); windowSamples = 0
            }
            if collectives.isCoordinator, settings.checkpointEvery > 0, model.step % settings.checkpointEvery == 0 {
                let held = checkpoint(start: start)
                stall += held
                stepSeconds += held
                metrics.checkpointStall.recordSeconds(held)
                lastCheckpointStep = model.step
            }
        }
        // The final step is reported too (no log line), so the history ends where training did.
        if collectives.isCoordinator, steps > 0, lastReportedStep != model.step {
            // Up to the last step: the idle wait before stopping is not training time.
            let dt = lastStepAt.timeIntervalSince(windowStart)
            onProgress?(TrainerProgress(step: model.step, samples: samplesTrained, epoch: epoch,
                                        samplesPerSecond: Double(windowSamples) / max(dt, 1e-9), metrics: model.metrics))
        }
        // The final version, unless this step already has one (e.g. a restart that found no new
        // data: the version it resumed from stays as written, metrics and all).
        if collectives.isCoordinator, !leftJob, lastCheckpointStep != model.step, let store, !store.hasVersion(step: model.step), writer != nil {
            let held = checkpoint(start: start)
            stall += held
            metrics.checkpointStall.recordSeconds(held)
        }
        if coordinator && steps > 0 { metrics.record(modelMetrics: model.metrics) }
        try writer?.finish()
        return TrainSummary(steps: steps, samples: samplesTrained, seconds: Date().timeIntervalSince(start),
                            metrics: model.metrics, lastCheckpoint: writer?.written.last?.url,
                            rejected: source.rejections.total, checkpointStallSeconds: stall,
                            communicationSeconds: comm, computeSeconds: compute, stopReason: stopReason)
    }

    /// Snapshots the model on this thread and hands the write to the background writer;
    /// returns the seconds training was held up.
    private func checkpoint(start: Date) -> Double {
        guard let writer else { return 0 }
        let t0 = Date()
        do { try model.refreshBeforeCheckpoint() } catch {
            logger.warning("checkpoint: could not refresh the model's sidecar files (\(error)); using the last known ones")
        }
        defer { afterCheckpoint?() }
        let record = CheckpointRecord(step: model.step, samplesTrained: samplesTrained,
                                      wallTimeSeconds: wallTimeBefore + Date().timeIntervalSince(start),
                                      metrics: model.metrics, streamPositions: positions,
                                      newestEventProducedMs: newestEventProducedMs)
        writer.submit(model.snapshot(record: record))
        return Date().timeIntervalSince(t0)
    }
}

/// Scores a labelled Criteo file with a model: AUC, log loss, row counts.
public struct Evaluation: Codable, Sendable {
    public var auc: Double?
    public var logloss: Double
    public var rows: Int
    public var rejected: Int
    public var rejectedByReason: [String: Int]

    enum CodingKeys: String, CodingKey {
        case auc, logloss, rows, rejected
        case rejectedByReason = "rejected_by_reason"
    }
}

public func evaluate(model: WideDeepModel, stats: FeatureStats, path: String, batchSize: Int = 1000,
                     onReject: (@Sendable (LineRejection) -> Void)? = nil) throws -> Evaluation {
    let source = try FileBatchSource(path: path, encoder: FeatureEncoder(stats: stats), batchSize: batchSize,
                                     epochs: 1, onReject: onReject)
    let ws = model.makeWorkspace(capacity: batchSize)
    var scores: [Float] = [], labels: [Float] = []
    while let b = try source.next() {
        guard let rows = b.rows else { continue }
        scores.append(contentsOf: model.predict(rows, workspace: ws))
        labels.append(contentsOf: rows.labels)
    }
    let r = source.rejections
    return Evaluation(auc: rocAUC(scores: scores, labels: labels), logloss: meanLogLoss(probabilities: scores, labels: labels),
                      rows: scores.count, rejected: r.total,
                      rejectedByReason: Dictionary(uniqueKeysWithValues: r.byReason.map { ($0.key.rawValue, $0.value) }))
}
