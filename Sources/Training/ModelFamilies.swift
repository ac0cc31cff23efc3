import Foundation
import Checkpoint
import Models

/// The model families this build trains and serves, keyed by `model.kind` in a config and by
/// `model_kind` in a checkpoint manifest. The trainer loop, the checkpoint store and writer, and
/// `ckpt` work through `TrainableModel` and `CheckpointSnapshot`; a family adds its kind here.
public enum ModelFamilies {
    public static let kinds: [String] = [WideDeepCheckpoint.modelKind]

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
        // Wide&Deep is the only family so far (`check` refused every other kind).
        let loaded = try WideDeepCheckpoint.load(dir, verify: verify)
        return WideDeepTraining(model: loaded.model, stats: loaded.stats, batchSize: batchSize)
    }
}
