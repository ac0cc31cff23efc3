import Foundation
import Checkpoint
import Features

// What evaluation and serving need from every RL family: score every item for a user's state
// with the same scores training ranks by. Family-specific parts stay behind this seam; `eval`
// and `/v1/recommend` never name a family.

/// A model that ranks next items for (user, recent items) states.
public protocol NextItemScorer: AnyObject, Sendable {
    /// H: items in a state (oldest first, padded in front with `TransitionBatch.paddingItem`).
    var historyLength: Int { get }
    /// Columns of `scores`: item ids 0 ..< itemCount (0 and 1 are never recommended).
    var itemCount: Int { get }
    /// Row-major [B × itemCount] scores of every item for each (user, history); item ids 0
    /// (padding) and 1 (OOV) score −∞. `histories` is [B × H]. Unknown ids read as zero rows.
    /// Not safe to call from two threads at once (callers serialise or keep one model per thread).
    func scores(users: [Int32], histories: [Int32]) -> [Float]
}

extension ReinforceModel: NextItemScorer {
    public var historyLength: Int { config.historyLength }
}

extension DDPGModel: NextItemScorer {
    public var historyLength: Int { config.historyLength }
}

extension BCQModel: NextItemScorer {
    public var historyLength: Int { config.historyLength }
}

/// An RL checkpoint loaded for evaluation or serving: the scorer, the keys of its ids, the manifest.
public struct LoadedRecommender: Sendable {
    public let scorer: any NextItemScorer
    public let keys: BehaviorKeys
    public let manifest: CheckpointManifest
    public let directory: URL
}

/// The RL families' checkpoints, by `model_kind`.
public enum RecommenderCheckpoints {
    /// Model kinds whose checkpoints load as a `NextItemScorer`.
    public static let kinds: [String] = [ReinforceCheckpoint.modelKind, DDPGCheckpoint.modelKind, BCQCheckpoint.modelKind]

    /// Verifies (unless `verify` is false) and loads an RL checkpoint; refuses other kinds with a
    /// message naming what the directory holds.
    public static func load(_ dir: URL, verify: Bool = true) throws -> LoadedRecommender {
        let manifest = try CheckpointStore.loadManifest(dir)
        switch manifest.modelKind {
        case ReinforceCheckpoint.modelKind:
            let l = try ReinforceCheckpoint.load(dir, verify: verify)
            return LoadedRecommender(scorer: l.model, keys: l.keys, manifest: l.manifest, directory: dir)
        case DDPGCheckpoint.modelKind:
            let l = try DDPGCheckpoint.load(dir, verify: verify)
            return LoadedRecommender(scorer: l.model, keys: l.keys, manifest: l.manifest, directory: dir)
        case BCQCheckpoint.modelKind:
            let l = try BCQCheckpoint.load(dir, verify: verify)
            return LoadedRecommender(scorer: l.model, keys: l.keys, manifest: l.manifest, directory: dir)
        default:
            throw CheckpointLoadError("checkpoint \(dir.path) holds a '\(manifest.modelKind)' model, which does not recommend items "
                                      + "(kinds that do: \(kinds.joined(separator: ", ")))")
        }
    }
}
