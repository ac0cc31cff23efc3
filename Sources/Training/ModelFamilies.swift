import Foundation
import Checkpoint
import Models

/// The model families this build trains and serves, keyed by `model.kind` in a config and by
/// `model_kind` in a checkpoint manifest. The trainer loop, the checkpoint store and writer, and
/// `ckpt` work through `TrainableModel` and `CheckpointSnapshot`; a family adds its kind here.
public enum ModelFamilies {
    public static let kinds: [String] = [WideDeepCheckpoint.modelKind, ReinforceCheckpoint.modelKind]

    /// Throws a message naming the known kinds when `kind` is not one.
    public static func check(kind: String, what: String) throws {
        guard kinds.contains(kind) else {
            throw CheckpointLoadError("\(what) is '\(kind)', not a model family of this build (known: \(kinds.joined(separator: ", ")))")
        }
    }

    /// Loads a checkpoint version as a model its family can train on, whatever its kind (the
    /// manifest's `model_kind` chooses the family). Throws `CheckpointLoadError` naming the problem.
    public static func loadTrainable(_ dir: URL, batchSize: Int = 1, verify: Bool = true) throws -> any TrainableModel {
        let manifest = try CheckpointStore.loadManifest(dir)
        try check(kind: manifest.modelKind, what: "model_kind of \(dir.path)")
        if manifest.modelKind == ReinforceCheckpoint.modelKind {
            let loaded = try ReinforceCheckpoint.load(dir, verify: verify)
            return ReinforceTraining(model: loaded.model, keys: loaded.keys)
        }
        let loaded = try WideDeepCheckpoint.load(dir, verify: verify)
        return WideDeepTraining(model: loaded.model, stats: loaded.stats, batchSize: batchSize)
    }

    /// A model from a state exported by `TrainableModel.exportState()` (a joiner, every rank at start).
    public static func restore(_ state: ModelState, batchSize: Int) throws -> any TrainableModel {
        try check(kind: state.kind, what: "the job's model kind")
        if state.kind == ReinforceCheckpoint.modelKind { return try ReinforceTraining.restore(state) }
        return try WideDeepTraining.restore(state, batchSize: batchSize)
    }

    /// A fresh model of `kind` from its config section (as JSON) and the sidecar files it starts
    /// from (Wide&Deep: `features.stats`, the statistics file its ids come from; REINFORCE: none).
    public static func fresh(kind: String, config: JSONValue, sidecars: [String: Data], batchSize: Int) throws -> any TrainableModel {
        try check(kind: kind, what: "model.kind")
        if kind == ReinforceCheckpoint.modelKind { return try ReinforceTraining.fresh(config: config) }
        return try WideDeepTraining.fresh(config: config, sidecars: sidecars, batchSize: batchSize)
    }
}
