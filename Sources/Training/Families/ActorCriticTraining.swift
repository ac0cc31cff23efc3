import Foundation
import Checkpoint
import Features
import Models

// DDPG's and BCQ's side of the training loop. A step on a `transitions` batch:
//
//   1. agree on the step's largest item id (one small allgatherv), so the item tables — hence
//      the dense layouts — agree on every participant;
//   2. critic phase: gradients of the critics, one allreduce (critic range + its loss sums),
//      the identical Adam update;
//   3. actor phase, with the updated critics and λ from the critic phase's global mean |Q|:
//      progressive NDCG@10 and gradients, the fused allreduce plus the rows' allgathervs (input
//      rows, and the item table's candidate rows beyond `full_softmax_items`) through the shared
//      `GradientCombiner`, the identical update, then the targets' soft update.
//
// So replicas stay bit-identical: every participant makes the same collective calls in the same
// order and applies the same sums.

/// What the shared adapter needs from an actor-critic model (DDPGModel, BCQModel).
public protocol ActorCriticModel: AnyObject {
    associatedtype Config: TransitionModelConfig
    /// The model's loss sums of a phase (the adapter reads the gradients' extras instead).
    associatedtype Loss
    var config: Config { get }
    var step: Int { get }
    func reserveItems(through maxId: Int32)
    func makeCriticGradients() -> PhaseGradients
    func makeActorGradients() -> PhaseGradients
    func computeCriticGradients(_ batch: TransitionBatch, into g: PhaseGradients) -> Loss
    func applyCriticGradients(_ g: PhaseGradients, totalSamples: Int)
    func actorQScale(meanAbsQ: Double) -> Float
    func computeActorGradients(_ batch: TransitionBatch, lambda: Float, into g: PhaseGradients) -> Loss
    func applyActorGradients(_ g: PhaseGradients, totalSamples: Int)
}

extension DDPGModel: ActorCriticModel {}
extension BCQModel: ActorCriticModel {}

/// The step both actor-critic families share; each family's adapter adds its names, log line
/// and checkpoint.
final class ActorCriticStep<M: ActorCriticModel> {
    let model: M
    let critic: PhaseGradients, actor: PhaseGradients
    private let combiner = GradientCombiner()
    private let empty: TransitionBatch
    /// The last step's per-sample means of the critic phase's and the actor phase's extras
    /// (index 0, the sample count, is the step's total), and λ.
    private(set) var criticMeans: [Double] = [], actorMeans: [Double] = [], lambda: Float = 0
    private(set) var validation = ProgressiveNDCG()
    /// The actor extra holding the NDCG sum (the next one holds the samples it covers).
    let ndcgExtra: Int

    init(model: M, ndcgExtra: Int) {
        self.model = model
        self.ndcgExtra = ndcgExtra
        critic = model.makeCriticGradients()
        actor = model.makeActorGradients()
        empty = TransitionBatch(historyLength: model.config.historyLength)
    }

    func run(_ local: SourcedBatch?, collectives: Collectives) throws -> StepTiming {
        let batch = local?.transitions ?? empty
        var compute = 0.0, communication = 0.0
        var t = Date()
        func lap(_ isCommunication: Bool) {
            let now = Date()
            if isCommunication { communication += now.timeIntervalSince(t) } else { compute += now.timeIntervalSince(t) }
            t = now
        }
        let largest = try collectives.allgatherv([ItemTables.largest(batch) ?? 0]).values.max() ?? 0
        model.reserveItems(through: largest)
        lap(true)

        _ = model.computeCriticGradients(batch, into: critic)
        lap(false)
        var none: [SparseGradient] = []
        try combiner.combine(dense: critic.dense.buffer, sparse: &none, over: collectives)
        lap(true)
        let total = critic.sampleCount
        model.applyCriticGradients(critic, totalSamples: total)
        let n = Double(max(total, 1))
        criticMeans = (0..<critic.extras).map { $0 == 0 ? Double(total) : Double(critic[extra: $0]) / n }
        lambda = model.actorQScale(meanAbsQ: criticMeans[2])

        _ = model.computeActorGradients(batch, lambda: lambda, into: actor)
        lap(false)
        var tables = [actor.users, actor.items, actor.itemRows]
        try combiner.combine(dense: actor.dense.buffer, sparse: &tables, over: collectives)
        actor.users = tables[0]; actor.items = tables[1]; actor.itemRows = tables[2]
        lap(true)
        model.applyActorGradients(actor, totalSamples: actor.sampleCount)
        lap(false)
        actorMeans = (0..<actor.extras).map { $0 == 0 ? Double(actor.sampleCount) : Double(actor[extra: $0]) / n }
        validation.add(sum: Double(actor[extra: ndcgExtra]), count: Int(actor[extra: ndcgExtra + 1]))
        return StepTiming(compute: compute, communication: communication)
    }
}

/// The keys a `ModelState` carries as sidecar files.
func behaviorKeys(_ state: ModelState) throws -> BehaviorKeys {
    try BehaviorKeys.decode(files: state.sidecars.mapValues { [UInt8]($0) }, what: "the job's state")
}

// MARK: - DDPG

public final class DDPGTraining: BehaviorTrainable {
    public let model: DDPGModel
    private let steps: ActorCriticStep<DDPGModel>
    /// The keys of the user and item ids, written with each checkpoint.
    public var keys: BehaviorKeys
    /// Where newer keys come from before a checkpoint (the file reader; the feature store online).
    public var refreshKeys: (() throws -> BehaviorKeys)?

    public init(model: DDPGModel, keys: BehaviorKeys = BehaviorKeys()) {
        self.model = model
        self.keys = keys
        steps = ActorCriticStep(model: model, ndcgExtra: 3)
    }

    public var kind: String { DDPGCheckpoint.modelKind }
    public var step: Int { model.step }
    public var batchKind: FeatureBatchKind { .transitions }

    public func check(_ batch: SourcedBatch) throws {
        _ = try TransitionBatchCheck.transitions(batch, historyLength: model.config.historyLength, family: "DDPG")
    }

    public func trainStep(_ local: SourcedBatch?, totalSamples: Int, contributors: Int, collectives: Collectives) throws -> StepTiming {
        try steps.run(local, collectives: collectives)
    }

    // Actor extras: count, Σ BC loss, Σ Q(x, μ(x)), Σ NDCG. Critic extras: count, Σ (Q − y)², Σ |Q|.
    private var criticLoss: Double { steps.criticMeans.count > 1 ? steps.criticMeans[1] : 0 }
    private var bcLoss: Double { steps.actorMeans.count > 1 ? steps.actorMeans[1] : 0 }
    private var actorQ: Double { steps.actorMeans.count > 2 ? steps.actorMeans[2] : 0 }
    /// The actor's objective: bc_weight·BC − λ·Q(x, μ(x)), per transition.
    private var actorLoss: Double { Double(model.config.bcWeight) * bcLoss - Double(steps.lambda) * actorQ }

    public func logLine(epoch: Int, samplesPerSecond: Double) -> String {
        String(format: "epoch: %d, step: %d, critic_loss: %.6f, actor_loss: %.6f, transitions/s: %.0f, pv_ndcg@10: %.4f",
               epoch, model.step, criticLoss, actorLoss, samplesPerSecond, steps.validation.mean)
    }

    public var metrics: [String: Double] {
        ["critic_loss": criticLoss, "actor_loss": actorLoss, "bc_loss": bcLoss, "actor_q": actorQ, "pv_ndcg@10": steps.validation.mean]
    }

    public func refreshBeforeCheckpoint() throws {
        if let refreshKeys { keys = try refreshKeys() }
    }

    public func snapshot(record: CheckpointRecord) -> any CheckpointSnapshot {
        DDPGCheckpoint.snapshot(model: model, keys: keys, record: record)
    }

    public var parameterDigest: UInt64 { model.parameterDigest() }

    public func exportState() -> ModelState {
        ModelState(kind: kind, config: model.config.json, sidecars: keys.files.mapValues { Data($0) },
                   tensors: model.exportTensors(includeOptimizer: true), step: model.step)
    }

    /// The inverse of `exportState()`.
    static func restore(_ state: ModelState) throws -> DDPGTraining {
        let model = try DDPGModel.load(config: DDPGConfig.decode(state.config),
                                       tensors: Dictionary(uniqueKeysWithValues: state.tensors.map { ($0.name, $0) }), step: state.step)
        return DDPGTraining(model: model, keys: try behaviorKeys(state))
    }

    static func fresh(config json: JSONValue) throws -> DDPGTraining { DDPGTraining(model: DDPGModel(config: try DDPGConfig.decode(json))) }
}

// MARK: - BCQ

public final class BCQTraining: BehaviorTrainable {
    public let model: BCQModel
    private let steps: ActorCriticStep<BCQModel>
    /// The keys of the user and item ids, written with each checkpoint.
    public var keys: BehaviorKeys
    /// Where newer keys come from before a checkpoint (the file reader; the feature store online).
    public var refreshKeys: (() throws -> BehaviorKeys)?

    public init(model: BCQModel, keys: BehaviorKeys = BehaviorKeys()) {
        self.model = model
        self.keys = keys
        steps = ActorCriticStep(model: model, ndcgExtra: 4)
    }

    public var kind: String { BCQCheckpoint.modelKind }
    public var step: Int { model.step }
    public var batchKind: FeatureBatchKind { .transitions }

    public func check(_ batch: SourcedBatch) throws {
        _ = try TransitionBatchCheck.transitions(batch, historyLength: model.config.historyLength, family: "BCQ")
    }

    public func trainStep(_ local: SourcedBatch?, totalSamples: Int, contributors: Int, collectives: Collectives) throws -> StepTiming {
        try steps.run(local, collectives: collectives)
    }

    // Actor extras: count, Σ VAE loss, Σ BC loss, Σ Q1(x, ã), Σ NDCG. Critic extras: count, Σ critic loss, Σ |Q1|.
    private var criticLoss: Double { steps.criticMeans.count > 1 ? steps.criticMeans[1] : 0 }
    private var vaeLoss: Double { steps.actorMeans.count > 1 ? steps.actorMeans[1] : 0 }
    private var bcLoss: Double { steps.actorMeans.count > 2 ? steps.actorMeans[2] : 0 }
    private var actorQ: Double { steps.actorMeans.count > 3 ? steps.actorMeans[3] : 0 }
    /// The perturbation network's objective: bc_weight·BC − λ·Q1(x, ã), per transition.
    private var actorLoss: Double { Double(model.config.bcWeight) * bcLoss - Double(steps.lambda) * actorQ }

    public func logLine(epoch: Int, samplesPerSecond: Double) -> String {
        String(format: "epoch: %d, step: %d, vae_loss: %.6f, critic_loss: %.6f, actor_loss: %.6f, transitions/s: %.0f, pv_ndcg@10: %.4f",
               epoch, model.step, vaeLoss, criticLoss, actorLoss, samplesPerSecond, steps.validation.mean)
    }

    public var metrics: [String: Double] {
        ["vae_loss": vaeLoss, "critic_loss": criticLoss, "actor_loss": actorLoss, "bc_loss": bcLoss, "actor_q": actorQ,
         "pv_ndcg@10": steps.validation.mean]
    }

    public func refreshBeforeCheckpoint() throws {
        if let refreshKeys { keys = try refreshKeys() }
    }

    public func snapshot(record: CheckpointRecord) -> any CheckpointSnapshot {
        BCQCheckpoint.snapshot(model: model, keys: keys, record: record)
    }

    public var parameterDigest: UInt64 { model.parameterDigest() }

    public func exportState() -> ModelState {
        ModelState(kind: kind, config: model.config.json, sidecars: keys.files.mapValues { Data($0) },
                   tensors: model.exportTensors(includeOptimizer: true), step: model.step)
    }

    static func restore(_ state: ModelState) throws -> BCQTraining {
        let model = try BCQModel.load(config: BCQConfig.decode(state.config),
                                      tensors: Dictionary(uniqueKeysWithValues: state.tensors.map { ($0.name, $0) }), step: state.step)
        return BCQTraining(model: model, keys: try behaviorKeys(state))
    }

    static func fresh(config json: JSONValue) throws -> BCQTraining { BCQTraining(model: BCQModel(config: try BCQConfig.decode(json))) }
}
