import Foundation
import Checkpoint
import Features
import Models

// The seam between the shared training loop (`Trainer`) and a model family. The loop owns
// everything that is the same for every family — polling the source, agreeing on each step,
// membership changes, positions, logging cadence, checkpoint cadence and the background writer —
// and a `TrainableModel` owns the rest: its step (forward, backward, the collectives it needs,
// the identical update), its progressive validation, its log line, its checkpoint snapshot.

/// What one step cost, split for the summary (seconds).
public struct StepTiming: Sendable {
    public var compute: Double
    public var communication: Double
    public init(compute: Double = 0, communication: Double = 0) { self.compute = compute; self.communication = communication }
}

/// One model family's side of the training loop.
public protocol TrainableModel: AnyObject {
    /// The family (`model.kind` in the config, `model_kind` in the manifest).
    var kind: String { get }
    /// The feature batches it trains on (`rows` for Wide&Deep, `transitions` for the RL families):
    /// which feature streams an online trainer reads.
    var batchKind: FeatureBatchKind { get }
    /// Optimizer steps applied so far (identical on every participant).
    var step: Int { get }
    /// Refuses a batch this model cannot train on, before anything is computed (a clear error:
    /// the feature workers and the trainer disagree).
    func check(_ batch: SourcedBatch) throws
    /// One synchronous data-parallel step. `local` is this participant's batch (nil when it has
    /// none this step while others do); `totalSamples` is the step's sample count over all
    /// participants and `contributors` how many had a batch. The model scores `local` before
    /// training on it (progressive validation), computes its gradients, combines them through
    /// `collectives` — every participant makes the same calls in the same order — and applies
    /// the identical update, so replicas stay bit-identical.
    func trainStep(_ local: SourcedBatch?, totalSamples: Int, contributors: Int, collectives: Collectives) throws -> StepTiming
    /// The training log line after a step (the seed's format for Wide&Deep).
    func logLine(epoch: Int, samplesPerSecond: Double) -> String
    /// The latest loss terms and progressive-validation figures, for checkpoints and the summary.
    var metrics: [String: Double] { get }
    /// Called (coordinator) before each checkpoint: pick up sidecar changes such as dictionary
    /// growth. May fail; the snapshot then uses what is known.
    func refreshBeforeCheckpoint() throws
    /// An in-memory copy of the model for the checkpoint writer (cheap; taken between steps).
    func snapshot(record: CheckpointRecord) -> any CheckpointSnapshot
    /// The whole state a newly joining participant needs to continue identically (config,
    /// sidecar files, parameters, optimizer state, step); `ModelFamilies.restore` inverts it.
    func exportState() -> ModelState
    /// A digest of every parameter (FNV-1a 64): equal on every replica after every step.
    var parameterDigest: UInt64 { get }
}

/// A model's whole state, family-neutral: what rank 0 broadcasts to joiners and at start.
public struct ModelState: Sendable {
    /// The family (`model_kind`).
    public var kind: String
    /// The family's config, as recorded in a manifest's `model_config`.
    public var config: JSONValue
    /// Files beside the tensors (e.g. Wide&Deep's `features.stats`), by name.
    public var sidecars: [String: Data]
    /// Parameters and optimizer state.
    public var tensors: [ModelTensor]
    public var step: Int

    public init(kind: String, config: JSONValue, sidecars: [String: Data], tensors: [ModelTensor], step: Int) {
        self.kind = kind; self.config = config; self.sidecars = sidecars; self.tensors = tensors; self.step = step
    }
}

extension TrainableModel {
    public func refreshBeforeCheckpoint() throws {}
}

/// A family that trains on behaviour transitions (the RL families): its checkpoints carry the
/// keys of its user and item ids (`BehaviorKeys`), refreshed before each checkpoint from the
/// file reader or the feature store's id logs.
public protocol BehaviorTrainable: TrainableModel {
    var keys: BehaviorKeys { get set }
    var refreshKeys: (() throws -> BehaviorKeys)? { get set }
}
