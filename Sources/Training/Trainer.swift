import Foundation
import Checkpoint
import Features
import Models
import StreamRecNumerics

/// Combines one rank's step gradients with every other rank's. The trainer loop is the same for
/// one process and for N MPI ranks; only this seam differs.
public protocol GradientExchange: AnyObject {
    /// Sums `grads` across participants in place: afterwards `grads` holds the summed dense
    /// buffer (sample count included) and the concatenated sparse lists, in an order every
    /// participant agrees on.
    func combine(_ grads: WideDeepGradients) throws
    /// Whether this participant writes checkpoints and logs (rank 0).
    var isCoordinator: Bool { get }
}

/// Single process: nothing to combine.
public final class LocalExchange: GradientExchange {
    public init() {}
    public func combine(_ grads: WideDeepGradients) throws {}
    public var isCoordinator: Bool { true }
}

public struct TrainSummary: Sendable {
    public var steps: Int
    public var samples: Int
    public var seconds: Double
    public var progressiveAUC: Double?
    public var progressiveLogLoss: Double
    public var lastWideLoss: Double
    public var lastDeepLoss: Double
    public var lastCheckpoint: URL?
    public var rejected: Int
}

/// The training loop shared by every way of running StreamRec: pull a batch, score it before
/// training on it (progressive validation), compute gradients, combine, apply, log in the
/// seed's format, checkpoint every N steps and at the end.
public final class Trainer {
    public let model: WideDeepModel
    public let stats: FeatureStats
    public let settings: TrainSettings
    public let source: BatchSource
    public let exchange: GradientExchange
    public let store: CheckpointStore?
    public let log: (String) -> Void
    public var samplesTrained: Int
    private var validation = ProgressiveValidation()
    private var wallTimeBefore: Double

    public init(model: WideDeepModel, stats: FeatureStats, settings: TrainSettings, source: BatchSource,
                exchange: GradientExchange = LocalExchange(), store: CheckpointStore?,
                samplesTrained: Int = 0, wallTimeBefore: Double = 0, log: @escaping (String) -> Void) {
        self.model = model
        self.stats = stats
        self.settings = settings
        self.source = source
        self.exchange = exchange
        self.store = store
        self.samplesTrained = samplesTrained
        self.wallTimeBefore = wallTimeBefore
        self.log = log
    }

    public func run() throws -> TrainSummary {
        let ws = model.makeWorkspace(capacity: settings.batchSize)
        let grads = model.makeGradients()
        let start = Date()
        var windowStart = Date(), windowSamples = 0
        var steps = 0, lastLoss = StepLoss(logLossSum: 0, l2Term: 0, count: 0)
        var lastCheckpoint: URL?
        var positions: [String: String] = [:]
        var epoch = 1
        while let sourced = try source.next() {
            let batch = sourced.batch
            epoch = sourced.epoch
            positions.merge(sourced.positions) { $1 }
            let loss = model.computeGradients(batch, workspace: ws, into: grads)
            validation.add(scores: Array(ws.probs.buffer.prefix(batch.count))[...], labels: batch.labels[...])
            try exchange.combine(grads)
            let total = grads.sampleCount
            model.applyGradients(dense: grads.dense.buffer, ids: grads.ids, deepRowGrads: grads.deepRows,
                                 wideRowGrads: grads.wideRows, totalSamples: total)
            samplesTrained += total
            windowSamples += total
            steps += 1
            lastLoss = loss
            if exchange.isCoordinator && (model.step % max(settings.logEvery, 1) == 0) {
                let dt = Date().timeIntervalSince(windowStart)
                log(String(format: "epoch: %d, step: %d, wide_loss: %.6f, deep_loss: %.6f, samples/s: %.0f, pv_auc: %@",
                           epoch, model.step, loss.wideLoss, loss.deepLoss, Double(windowSamples) / max(dt, 1e-9),
                           validation.auc.map { String(format: "%.4f", $0) } ?? "n/a"))
                windowStart = Date(); windowSamples = 0
            }
            if exchange.isCoordinator, let store, settings.checkpointEvery > 0, model.step % settings.checkpointEvery == 0 {
                lastCheckpoint = try checkpoint(store, start: start, loss: lastLoss, positions: positions)
            }
        }
        if exchange.isCoordinator, let store, steps > 0 || lastCheckpoint == nil {
            if lastCheckpoint.flatMap({ CheckpointStore.step(fromDirectoryName: $0.lastPathComponent) }) != model.step {
                lastCheckpoint = try checkpoint(store, start: start, loss: lastLoss, positions: positions)
            }
        }
        return TrainSummary(steps: steps, samples: samplesTrained, seconds: Date().timeIntervalSince(start),
                            progressiveAUC: validation.auc, progressiveLogLoss: validation.logLoss,
                            lastWideLoss: lastLoss.wideLoss, lastDeepLoss: lastLoss.deepLoss,
                            lastCheckpoint: lastCheckpoint, rejected: source.rejections.total)
    }

    private func checkpoint(_ store: CheckpointStore, start: Date, loss: StepLoss, positions: [String: String]) throws -> URL {
        var metrics: [String: Double] = ["wide_loss": loss.wideLoss, "deep_loss": loss.deepLoss,
                                         "pv_logloss": validation.logLoss]
        if let auc = validation.auc { metrics["pv_auc"] = auc }
        let record = WideDeepCheckpoint.Record(step: model.step, samplesTrained: samplesTrained,
                                               wallTimeSeconds: wallTimeBefore + Date().timeIntervalSince(start),
                                               metrics: metrics, streamPositions: positions)
        let url = try WideDeepCheckpoint.write(WideDeepCheckpoint.snapshot(model: model, stats: stats, record: record), to: store)
        log("checkpoint: step \(model.step), samples \(samplesTrained) → \(url.path)")
        return url
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
        scores.append(contentsOf: model.predict(b.batch, workspace: ws))
        labels.append(contentsOf: b.batch.labels)
    }
    let r = source.rejections
    return Evaluation(auc: rocAUC(scores: scores, labels: labels), logloss: meanLogLoss(probabilities: scores, labels: labels),
                      rows: scores.count, rejected: r.total,
                      rejectedByReason: Dictionary(uniqueKeysWithValues: r.byReason.map { ($0.key.rawValue, $0.value) }))
}
