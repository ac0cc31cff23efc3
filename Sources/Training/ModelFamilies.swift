import Foundation
import Checkpoint
import Models

/// One model family: everything the trainer, `ckpt`, the config loader and resume/join need to
/// know about it. A family plugs in with one entry in `ModelFamilies.all`.
public struct ModelFamily: Sendable {
    /// `model.kind` in a config, `model_kind` in a manifest.
    public let kind: String
    /// Decodes and validates a `model:` section (as JSON; `kind` ignored, absent keys default).
    /// A malformed section throws `DecodingError`; a setting the model cannot run, `ModelError`.
    public let decodeConfig: @Sendable (JSONValue) throws -> any ModelFamilyConfig
    /// Built-in presets (`--preset NAME` absent from the file's `presets:`): the overlay of the
    /// `model:` section for a name, nil when the family has no such preset.
    public let builtinPreset: @Sendable (String) -> JSONValue?
    /// Names of the built-in presets, for messages.
    public let builtinPresetNames: [String]
    /// A fresh model from its config (as JSON, a manifest's `model_config`) and the sidecar files
    /// it starts from (Wide&Deep: `features.stats`).
    public let fresh: @Sendable (_ config: JSONValue, _ sidecars: [String: Data], _ batchSize: Int) throws -> any TrainableModel
    /// A model from a `ModelState` (a joiner, every rank at start).
    public let restore: @Sendable (_ state: ModelState, _ batchSize: Int) throws -> any TrainableModel
    /// A checkpoint version, loaded as a model its family can train on.
    public let loadTrainable: @Sendable (_ directory: URL, _ batchSize: Int, _ verify: Bool) throws -> any TrainableModel

    public init(kind: String, decodeConfig: @escaping @Sendable (JSONValue) throws -> any ModelFamilyConfig,
                builtinPreset: @escaping @Sendable (String) -> JSONValue? = { _ in nil }, builtinPresetNames: [String] = [],
                fresh: @escaping @Sendable (JSONValue, [String: Data], Int) throws -> any TrainableModel,
                restore: @escaping @Sendable (ModelState, Int) throws -> any TrainableModel,
                loadTrainable: @escaping @Sendable (URL, Int, Bool) throws -> any TrainableModel) {
        self.kind = kind; self.decodeConfig = decodeConfig
        self.builtinPreset = builtinPreset; self.builtinPresetNames = builtinPresetNames
        self.fresh = fresh; self.restore = restore; self.loadTrainable = loadTrainable
    }
}

/// The model families this build trains and serves, keyed by `model.kind` in a config and by
/// `model_kind` in a checkpoint manifest. The trainer loop, the checkpoint store and writer, and
/// `ckpt` work through `TrainableModel` and `CheckpointSnapshot`; a family adds its entry to `all`.
public enum ModelFamilies {
    public static let all: [ModelFamily] = [
        ModelFamily(
            kind: WideDeepCheckpoint.modelKind,
            decodeConfig: { try WideDeepConfig.decode($0) },
            builtinPreset: { name in
                WideDeepConfig.preset(name).map { p in
                    ["embedding_size": .number(Double(p.embeddingSize)), "deep_layers": .array(p.deepLayers.map { .number(Double($0)) })]
                }
            },
            builtinPresetNames: ["large", "small"],
            fresh: { try WideDeepTraining.fresh(config: $0, sidecars: $1, batchSize: $2) },
            restore: { try WideDeepTraining.restore($0, batchSize: $1) },
            loadTrainable: { dir, batchSize, verify in
                let loaded = try WideDeepCheckpoint.load(dir, verify: verify)
                return WideDeepTraining(model: loaded.model, stats: loaded.stats, batchSize: batchSize)
            }),
        ModelFamily(
            kind: ReinforceCheckpoint.modelKind,
            decodeConfig: { try ReinforceConfig.decode($0) },
            fresh: { config, _, _ in try ReinforceTraining.fresh(config: config) },
            restore: { state, _ in try ReinforceTraining.restore(state) },
            loadTrainable: { dir, _, verify in
                let loaded = try ReinforceCheckpoint.load(dir, verify: verify)
                return ReinforceTraining(model: loaded.model, keys: loaded.keys)
            }),
        actorCritic(DDPGModel.self),
        actorCritic(BCQModel.self),
    ]

    /// The entry of an actor-critic family (DDPG, BCQ): they differ in the model alone.
    static func actorCritic<M: ActorCriticModel>(_: M.Type) -> ModelFamily {
        ModelFamily(
            kind: M.modelKind,
            decodeConfig: { try M.Config.decode($0) },
            fresh: { config, _, _ in try ActorCriticTraining<M>.fresh(config: config) },
            restore: { state, _ in try ActorCriticTraining<M>.restore(state) },
            loadTrainable: { dir, _, verify in
                let loaded = try ActorCriticCheckpoint<M>.load(dir, verify: verify)
                return ActorCriticTraining(model: loaded.model, keys: loaded.keys)
            })
    }

    public static var kinds: [String] { all.map(\.kind) }

    /// The family of `kind`; throws a message naming the known kinds when there is none.
    public static func family(_ kind: String, what: String) throws -> ModelFamily {
        guard let f = all.first(where: { $0.kind == kind }) else {
            throw CheckpointLoadError("\(what) is '\(kind)', not a model family of this build (known: \(kinds.joined(separator: ", ")))")
        }
        return f
    }

    /// Throws a message naming the known kinds when `kind` is not one.
    public static func check(kind: String, what: String) throws { _ = try family(kind, what: what) }

    /// Loads a checkpoint version as a model its family can train on, whatever its kind (the
    /// manifest's `model_kind` chooses the family). Throws `CheckpointLoadError` naming the problem.
    public static func loadTrainable(_ dir: URL, batchSize: Int = 1, verify: Bool = true) throws -> any TrainableModel {
        let manifest = try CheckpointStore.loadManifest(dir)
        return try family(manifest.modelKind, what: "model_kind of \(dir.path)").loadTrainable(dir, batchSize, verify)
    }

    /// A model from a state exported by `TrainableModel.exportState()` (a joiner, every rank at start).
    public static func restore(_ state: ModelState, batchSize: Int) throws -> any TrainableModel {
        try family(state.kind, what: "the job's model kind").restore(state, batchSize)
    }

    /// A fresh model of `kind` from its config section (as JSON) and the sidecar files it starts
    /// from (Wide&Deep: `features.stats`, the statistics file its ids come from; the RL families: none).
    public static func fresh(kind: String, config: JSONValue, sidecars: [String: Data], batchSize: Int) throws -> any TrainableModel {
        try family(kind, what: "model.kind").fresh(config, sidecars, batchSize)
    }
}
