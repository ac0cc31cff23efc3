import Foundation
import Checkpoint
import Features
import Models

// Wide&Deep's side of the training loop: a step on a `rows` batch (progressive AUC/log loss,
// gradients, the fused dense allreduce plus the sparse rows' allgathervs, the identical update),
// the seed's log line, and checkpoints with the dictionary snapshot (`features.stats`) beside
// the tensors.

public final class WideDeepTraining: TrainableModel {
    public let model: WideDeepModel
    /// The dictionary the model's ids come from (refreshed before each checkpoint).
    public private(set) var stats: FeatureStats
    /// Returns the current dictionary (dictionary growth during online training); nil = fixed.
    public var refreshStats: (() throws -> FeatureStats)?
    private var workspace: WideDeepWorkspace
    private let grads: WideDeepGradients
    private let combiner: WideDeepGradientCombiner
    private var validation = ProgressiveValidation()
    private var lastWide = 0.0, lastDeep = 0.0
    private let empty: FeatureBatch

    public init(model: WideDeepModel, stats: FeatureStats, batchSize: Int) {
        self.model = model
        self.stats = stats
        // Sized for the configured batch; a larger batch (e.g. featurize packing more rows than
        // train.batch_size) grows it, so any batch size trains with any config.
        workspace = model.makeWorkspace(capacity: max(batchSize, 1))
        grads = model.makeGradients()
        combiner = WideDeepGradientCombiner(embeddingSize: model.config.embeddingSize)
        empty = FeatureBatch(fieldCount: model.config.fieldCount, ids: [], weights: [], labels: [])
    }

    public var kind: String { WideDeepCheckpoint.modelKind }
    public var step: Int { model.step }

    public var batchKind: FeatureBatchKind { .rows }

    public func check(_ batch: SourcedBatch) throws {
        guard let rows = batch.rows else {
            throw TrainerError.incompatibleBatch(
                "batch at \(batch.positions.description) holds \(batch.payload.kind), a Wide&Deep model trains on rows: point the "
                + "trainer at the Criteo feature streams (sr:fs), or use a model.kind that trains on \(batch.payload.kind)")
        }
        if rows.fieldCount != model.config.fieldCount {
            throw TrainerError.incompatibleBatch(
                "batch at \(batch.positions.description) has \(rows.fieldCount) fields per row, the model expects "
                + "\(model.config.fieldCount) (model.field_count): the feature workers and the trainer disagree on the schema")
        }
    }

    public func trainStep(_ local: SourcedBatch?, totalSamples: Int, contributors: Int, collectives: Collectives) throws -> StepTiming {
        let batch = local?.rows ?? empty
        if batch.count > workspace.capacity { workspace = model.makeWorkspace(capacity: batch.count) }
        let c0 = Date()
        model.computeGradients(batch, workspace: workspace, into: grads)
        if batch.count > 0 {
            validation.add(scores: Array(workspace.probs.buffer.prefix(batch.count))[...], labels: batch.labels[...])
        }
        let c1 = Date()
        try combiner.combine(grads, over: collectives)
        let c2 = Date()
        let total = grads.sampleCount
        model.applyGradients(dense: grads.dense.buffer, ids: grads.ids, deepRowGrads: grads.deepRows,
                             wideRowGrads: grads.wideRows, totalSamples: total)
        let c3 = Date()
        lastWide = Double(grads.logLossSum) / Double(max(total, 1))
        // Each contributing rank adds the l2 term of the rows it touched: report their mean.
        lastDeep = lastWide + Double(grads.l2Term) / Double(max(contributors, 1))
        return StepTiming(compute: c1.timeIntervalSince(c0) + c3.timeIntervalSince(c2), communication: c2.timeIntervalSince(c1))
    }

    public func logLine(epoch: Int, samplesPerSecond: Double) -> String {
        String(format: "epoch: %d, step: %d, wide_loss: %.6f, deep_loss: %.6f, samples/s: %.0f, pv_auc: %@, pv_logloss: %.4f",
               epoch, model.step, lastWide, lastDeep, samplesPerSecond,
               validation.auc.map { String(format: "%.4f", $0) } ?? "n/a", validation.logLoss)
    }

    public var metrics: [String: Double] {
        var m: [String: Double] = ["wide_loss": lastWide, "deep_loss": lastDeep, "pv_logloss": validation.logLoss]
        if let auc = validation.auc { m["pv_auc"] = auc }
        return m
    }

    public func refreshBeforeCheckpoint() throws {
        if let refreshStats { stats = try refreshStats() }
    }

    public func snapshot(record: CheckpointRecord) -> any CheckpointSnapshot {
        WideDeepCheckpoint.snapshot(model: model, stats: stats, record: record)
    }

    public var parameterDigest: UInt64 { model.parameterDigest() }

    public func exportState() -> ModelState {
        ModelState(kind: kind, config: WideDeepTraining.configJSON(model.config),
                   sidecars: [WideDeepCheckpoint.statsFileName: Data(stats.serialized())],
                   tensors: model.exportTensors(includeOptimizer: true), step: model.step)
    }

    public static func configJSON(_ config: WideDeepConfig) -> JSONValue {
        // WideDeepConfig encodes to plain JSON, so this cannot fail.
        (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(config))) ?? .null
    }

    /// The inverse of `exportState()`.
    static func restore(_ state: ModelState, batchSize: Int) throws -> WideDeepTraining {
        let config = try JSONDecoder().decode(WideDeepConfig.self, from: JSONEncoder().encode(state.config))
        try config.validate()
        guard let statsBytes = state.sidecars[WideDeepCheckpoint.statsFileName] else {
            throw CheckpointLoadError("Wide&Deep state without its \(WideDeepCheckpoint.statsFileName)")
        }
        let stats = try FeatureStats(serialized: Array(statsBytes), source: "the job's model state")
        let model = try WideDeepModel.load(config: config, tensors: Dictionary(uniqueKeysWithValues: state.tensors.map { ($0.name, $0) }),
                                           step: state.step)
        return WideDeepTraining(model: model, stats: stats, batchSize: batchSize)
    }

    /// A fresh model: its config's `model:` section and the statistics file the ids come from.
    static func fresh(config json: JSONValue, sidecars: [String: Data], batchSize: Int) throws -> WideDeepTraining {
        let config = try JSONDecoder().decode(WideDeepConfig.self, from: JSONEncoder().encode(json))
        try config.validate()
        guard let statsBytes = sidecars[WideDeepCheckpoint.statsFileName] else {
            throw CheckpointLoadError("no checkpoint to resume from and no --stats FILE for a fresh start")
        }
        let stats = try FeatureStats(serialized: Array(statsBytes), source: "--stats")
        return WideDeepTraining(model: WideDeepModel(config: config), stats: stats, batchSize: batchSize)
    }
}

/// Combines one participant's Wide&Deep gradients with every other's through the shared
/// `GradientCombiner`: one allreduce over the fused dense buffer (with its sample count and loss
/// sums) and one sparse table whose rows are the deep row and the wide weight of each id.
public final class WideDeepGradientCombiner {
    /// Floats per deep embedding row (a model constant every rank knows).
    public let embeddingSize: Int
    private let combiner = GradientCombiner()

    public init(embeddingSize: Int) { self.embeddingSize = embeddingSize }

    /// Afterwards `grads` holds the summed dense buffer and the concatenated sparse lists.
    public func combine(_ grads: WideDeepGradients, over collectives: Collectives) throws {
        guard collectives.participants > 1 else { return }
        var tables = [SparseGradient(widths: [embeddingSize, 1], ids: grads.ids, parts: [grads.deepRows, grads.wideRows])]
        try combiner.combine(dense: grads.dense.buffer, sparse: &tables, over: collectives)
        grads.ids = tables[0].ids
        grads.deepRows = tables[0].parts[0]
        grads.wideRows = tables[0].parts[1]
    }
}
