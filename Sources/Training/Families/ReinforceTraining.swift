import Foundation
import Checkpoint
import Features
import Models

// REINFORCE's side of the training loop: a step on a `transitions` batch — agree on the item
// count (one small allgatherv), progressive next-item NDCG@10 and gradients (one forward and
// backward), the fused dense allreduce plus the sparse rows' allgathervs through the shared
// `GradientCombiner`, the identical update — its log line and its checkpoints (tensors only).

public final class ReinforceTraining: BehaviorTrainable {
    public let model: ReinforceModel
    private let grads: ReinforceGradients
    private let combiner = GradientCombiner()
    private let empty: TransitionBatch
    private var lastPolicyLoss = 0.0, lastBetaLoss = 0.0
    private var validation = ProgressiveNDCG()
    /// The keys of the user and item ids, written with each checkpoint.
    public var keys: BehaviorKeys
    /// Where newer keys come from before a checkpoint (the file reader's tables; the feature
    /// store's id logs online).
    public var refreshKeys: (() throws -> BehaviorKeys)?

    public init(model: ReinforceModel, keys: BehaviorKeys = BehaviorKeys()) {
        self.model = model
        self.keys = keys
        grads = model.makeGradients()
        empty = TransitionBatch(historyLength: model.config.historyLength)
    }

    public var kind: String { ReinforceCheckpoint.modelKind }
    public var step: Int { model.step }
    public var batchKind: FeatureBatchKind { .transitions }

    public func check(_ batch: SourcedBatch) throws {
        _ = try TransitionBatchCheck.transitions(batch, historyLength: model.config.historyLength, family: "REINFORCE")
    }

    public func trainStep(_ local: SourcedBatch?, totalSamples: Int, contributors: Int, collectives: Collectives) throws -> StepTiming {
        let batch = local?.transitions ?? empty
        // Every participant grows its item tables to the step's largest item id, so the dense
        // buffers agree in size before the allreduce.
        let c0 = Date()
        let largest = try collectives.allgatherv([ReinforceModel.largestItem(batch) ?? 0]).values.max() ?? 0
        model.reserveItems(through: largest)
        let c1 = Date()
        model.computeGradients(batch, into: grads)
        let c2 = Date()
        var tables = [grads.users, grads.items, grads.policyItems, grads.betaItems]
        try combiner.combine(dense: grads.dense.buffer, sparse: &tables, over: collectives)
        grads.users = tables[0]; grads.items = tables[1]; grads.policyItems = tables[2]; grads.betaItems = tables[3]
        let c3 = Date()
        let total = grads.sampleCount
        model.applyGradients(grads, totalSamples: total)
        let c4 = Date()
        lastPolicyLoss = Double(grads.policyLossSum) / Double(max(total, 1))
        lastBetaLoss = Double(grads.betaLossSum) / Double(max(total, 1))
        validation.add(sum: Double(grads.ndcgSum), count: grads.ndcgCount)
        return StepTiming(compute: c2.timeIntervalSince(c1) + c4.timeIntervalSince(c3),
                          communication: c1.timeIntervalSince(c0) + c3.timeIntervalSince(c2))
    }

    public func logLine(epoch: Int, samplesPerSecond: Double) -> String {
        String(format: "epoch: %d, step: %d, policy_loss: %.6f, beta_loss: %.6f, transitions/s: %.0f, pv_ndcg@10: %.4f",
               epoch, model.step, lastPolicyLoss, lastBetaLoss, samplesPerSecond, validation.mean)
    }

    public var metrics: [String: Double] {
        ["policy_loss": lastPolicyLoss, "beta_loss": lastBetaLoss, "pv_ndcg@10": validation.mean]
    }

    public func refreshBeforeCheckpoint() throws {
        if let refreshKeys { keys = try refreshKeys() }
    }

    public func snapshot(record: CheckpointRecord) -> any CheckpointSnapshot {
        ReinforceCheckpoint.snapshot(model: model, keys: keys, record: record)
    }

    public var parameterDigest: UInt64 { model.parameterDigest() }

    public func exportState() -> ModelState {
        ModelState(kind: kind, config: ReinforceCheckpoint.configJSON(model.config), sidecars: keys.files.mapValues { Data($0) },
                   tensors: model.exportTensors(includeOptimizer: true), step: model.step)
    }

    static func decodeConfig(_ json: JSONValue) throws -> ReinforceConfig {
        let config = try JSONDecoder().decode(ReinforceConfig.self, from: JSONEncoder().encode(json))
        try config.validate()
        return config
    }

    /// The inverse of `exportState()`.
    static func restore(_ state: ModelState) throws -> ReinforceTraining {
        let model = try ReinforceModel.load(config: decodeConfig(state.config),
                                            tensors: Dictionary(uniqueKeysWithValues: state.tensors.map { ($0.name, $0) }),
                                            step: state.step)
        return ReinforceTraining(model: model, keys: try BehaviorKeys.decode(files: state.sidecars.mapValues { [UInt8]($0) }, what: "the job's state"))
    }

    /// A fresh model from a config's `model:` section (no sidecar files).
    static func fresh(config json: JSONValue) throws -> ReinforceTraining {
        ReinforceTraining(model: ReinforceModel(config: try decodeConfig(json)))
    }
}

/// Progressive next-item NDCG@10 over the newest `window` transitions (each scored before the
/// step trained on it), from per-step sums over all participants.
struct ProgressiveNDCG {
    let window: Int
    private var steps: [(sum: Double, count: Int)] = []
    private var head = 0
    private var sum = 0.0, count = 0

    init(window: Int = 100_000) { self.window = window }

    mutating func add(sum s: Double, count n: Int) {
        guard n > 0 else { return }
        steps.append((s, n)); sum += s; count += n
        while count - steps[head].count >= window {
            sum -= steps[head].sum; count -= steps[head].count; head += 1
        }
        if head > 1024 { steps.removeFirst(head); head = 0 }
    }

    var mean: Double { count > 0 ? sum / Double(count) : 0 }
}
