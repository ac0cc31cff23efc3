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

/// What the shared adapter needs from an actor-critic model (DDPGModel, BCQModel) beyond its
/// parameters and phases: its name, where its NDCG sum is, and its losses (read from the
/// gradients' extras, not the phases' `Loss`).
public protocol ActorCriticModel: ActorCriticParameters {
    /// The family in messages ("DDPG").
    static var familyName: String { get }
    /// The actor extra holding the NDCG sum (the next one holds the samples it covers).
    static var ndcgExtra: Int { get }
    /// The step's losses in log order, from the per-sample means of the critic's and the actor's
    /// extras (index 0 the sample count) and λ; `logged` ones go into the log line.
    func losses(criticMeans: [Double], actorMeans: [Double], lambda: Float) -> [(name: String, value: Double, logged: Bool)]
}

extension ActorCriticModel {
    /// Mean `k` of a phase's extras, 0 before the first step.
    static func mean(_ means: [Double], _ k: Int) -> Double { means.count > k ? means[k] : 0 }
}

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

    init(model: M) {
        self.model = model
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
        validation.add(sum: Double(actor[extra: M.ndcgExtra]), count: Int(actor[extra: M.ndcgExtra + 1]))
        return StepTiming(compute: compute, communication: communication)
    }
}

/// The keys a `ModelState` carries as sidecar files.
func behaviorKeys(_ state: ModelState) throws -> BehaviorKeys {
    try BehaviorKeys.decode(files: state.sidecars.mapValues { [UInt8]($0) }, what: "the job's state")
}

/// DDPG's and BCQ's `TrainableModel`.
public final class ActorCriticTraining<M: ActorCriticModel>: BehaviorTrainable {
    public let model: M
    private let steps: ActorCriticStep<M>
    /// The keys of the user and item ids, written with each checkpoint.
    public var keys: BehaviorKeys
    /// Where newer keys come from before a checkpoint (the file reader; the feature store online).
    public var refreshKeys: (() throws -> BehaviorKeys)?

    public init(model: M, keys: BehaviorKeys = BehaviorKeys()) {
        self.model = model
        self.keys = keys
        steps = ActorCriticStep(model: model)
    }

    public var kind: String { M.modelKind }
    public var step: Int { model.step }
    public var batchKind: FeatureBatchKind { .transitions }

    public func check(_ batch: SourcedBatch) throws {
        _ = try TransitionBatchCheck.transitions(batch, historyLength: model.config.historyLength, family: M.familyName)
    }

    public func trainStep(_ local: SourcedBatch?, totalSamples: Int, contributors: Int, collectives: Collectives) throws -> StepTiming {
        try steps.run(local, collectives: collectives)
    }

    private var losses: [(name: String, value: Double, logged: Bool)] {
        model.losses(criticMeans: steps.criticMeans, actorMeans: steps.actorMeans, lambda: steps.lambda)
    }

    public func logLine(epoch: Int, samplesPerSecond: Double) -> String {
        String(format: "epoch: %d, step: %d, ", epoch, model.step)
            + losses.filter(\.logged).map { "\($0.name): " + String(format: "%.6f, ", $0.value) }.joined()
            + String(format: "transitions/s: %.0f, pv_ndcg@10: %.4f", samplesPerSecond, steps.validation.mean)
    }

    public var metrics: [String: Double] {
        var m = Dictionary(uniqueKeysWithValues: losses.map { ($0.name, $0.value) })
        m["pv_ndcg@10"] = steps.validation.mean
        return m
    }

    public func refreshBeforeCheckpoint() throws {
        if let refreshKeys { keys = try refreshKeys() }
    }

    public func snapshot(record: CheckpointRecord) -> any CheckpointSnapshot {
        ActorCriticCheckpoint<M>.snapshot(model: model, keys: keys, record: record)
    }

    public var parameterDigest: UInt64 { model.parameterDigest() }

    public func exportState() -> ModelState {
        ModelState(kind: kind, config: model.config.json, sidecars: keys.files.mapValues { Data($0) },
                   tensors: model.exportTensors(includeOptimizer: true), step: model.step)
    }

    /// The inverse of `exportState()`.
    static func restore(_ state: ModelState) throws -> ActorCriticTraining {
        let model = try M.load(config: M.Config.decode(state.config),
                               tensors: Dictionary(uniqueKeysWithValues: state.tensors.map { ($0.name, $0) }), step: state.step)
        return ActorCriticTraining(model: model, keys: try behaviorKeys(state))
    }

    static func fresh(config json: JSONValue) throws -> ActorCriticTraining { ActorCriticTraining(model: M(config: try M.Config.decode(json))) }
}

public typealias DDPGTraining = ActorCriticTraining<DDPGModel>
public typealias BCQTraining = ActorCriticTraining<BCQModel>

extension DDPGModel: ActorCriticModel {
    public static var familyName: String { "DDPG" }
    public static var ndcgExtra: Int { 3 }

    /// Actor extras: count, Σ BC loss, Σ Q(x, μ(x)), Σ NDCG. Critic extras: count, Σ (Q − y)², Σ |Q|.
    /// actor_loss is the actor's objective bc_weight·BC − λ·Q(x, μ(x)), per transition.
    public func losses(criticMeans: [Double], actorMeans: [Double], lambda: Float) -> [(name: String, value: Double, logged: Bool)] {
        let bc = Self.mean(actorMeans, 1), q = Self.mean(actorMeans, 2)
        return [("critic_loss", Self.mean(criticMeans, 1), true), ("actor_loss", Double(config.bcWeight) * bc - Double(lambda) * q, true),
                ("bc_loss", bc, false), ("actor_q", q, false)]
    }
}

extension BCQModel: ActorCriticModel {
    public static var familyName: String { "BCQ" }
    public static var ndcgExtra: Int { 4 }

    /// Actor extras: count, Σ VAE loss, Σ BC loss, Σ Q1(x, ã), Σ NDCG. Critic extras: count,
    /// Σ critic loss, Σ |Q1|. actor_loss is the perturbation network's objective
    /// bc_weight·BC − λ·Q1(x, ã), per transition.
    public func losses(criticMeans: [Double], actorMeans: [Double], lambda: Float) -> [(name: String, value: Double, logged: Bool)] {
        let bc = Self.mean(actorMeans, 2), q = Self.mean(actorMeans, 3)
        return [("vae_loss", Self.mean(actorMeans, 1), true), ("critic_loss", Self.mean(criticMeans, 1), true),
                ("actor_loss", Double(config.bcWeight) * bc - Double(lambda) * q, true), ("bc_loss", bc, false), ("actor_q", q, false)]
    }
}
