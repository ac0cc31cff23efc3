import Foundation
import Checkpoint
import Features
import StreamRecNumerics

// DDPG and BCQ ↔ tensors and checkpoint directories. Both hold their state as `DenseParameters`
// and `StateRows`, so one snapshot, export, load and checkpoint serve both.
//
//   DDPG   critic.dense.{0,1}.weight|bias, actor.dense.{0,1}.weight|bias    the networks
//          target.critic.*, target.actor.*                                  their target copies
//   BCQ    critic1.*, critic2.*, perturb.*                                  the twin critics and ξ
//          target.critic1.*, target.critic2.*, target.perturb.*             their target copies
//          vae.encoder.{dense.0,mean,log_std}.*, vae.decoder.dense.{0,1}.*  the VAE (no target)
//   both   action.items.weight [N × D], action.items.bias [N]               E, bE (N = itemCount)
//          user.ids, user.embedding.weight, item.ids, item.embedding.weight the state's rows (sorted by id)
//          optim.adam_m.<name>, optim.adam_v.<name>                          Adam state of each trained tensor

public typealias DDPGSnapshot = ActorCriticSnapshot<DDPGModel>
public typealias BCQSnapshot = ActorCriticSnapshot<BCQModel>
public typealias DDPGCheckpoint = ActorCriticCheckpoint<DDPGModel>
public typealias BCQCheckpoint = ActorCriticCheckpoint<BCQModel>

/// A point-in-time copy of an actor-critic model (a few memcpys between steps); turning it into
/// tensors happens later, off the training thread.
public struct ActorCriticSnapshot<Model: ActorCriticParameters>: @unchecked Sendable {
    public let config: Model.Config
    public let step: Int
    let dense: DenseParameters.Snapshot
    let rows: StateRows.Snapshot

    /// Every parameter, target and optimizer state; replicas with the same parameters export the
    /// same bytes whatever order they created rows in.
    public func exportTensors(includeOptimizer: Bool = true) -> [ModelTensor] {
        dense.exportTensors(includeOptimizer: includeOptimizer) + rows.exportTensors(includeOptimizer: includeOptimizer)
    }
}

extension ActorCriticParameters {
    public func snapshot() -> ActorCriticSnapshot<Self> {
        ActorCriticSnapshot(config: config, step: step, dense: dense.snapshot(itemTables: ActionItemTable.names, itemCount: itemCount),
                            rows: rows.snapshot())
    }

    public func exportTensors(includeOptimizer: Bool = true) -> [ModelTensor] {
        snapshot().exportTensors(includeOptimizer: includeOptimizer)
    }

    /// FNV-1a (64-bit) of every exported tensor: equal on two replicas exactly when their
    /// parameters, targets and optimizer state are bit-identical.
    public func parameterDigest() -> UInt64 { ModelTensor.digest(exportTensors(includeOptimizer: true)) }

    /// Builds a model from exported tensors (optimizer state optional: without it Adam restarts;
    /// without targets they start as copies). `step` comes from the manifest.
    public static func load(config: Config, tensors: [String: ModelTensor], step: Int) throws -> Self {
        try config.validate()
        let model = Self(config: config)
        model.step = step
        guard let bias = tensors[ActionItemTable.bias], bias.shape.count == 1, bias.shape[0] >= 2, bias.shape[0] <= Int(Int32.max) else {
            throw ModelError.incompatibleTensor("missing tensor \(ActionItemTable.bias) [items ≥ 2, item ids within Int32]")
        }
        model.reserveItems(through: Int32(bias.shape[0] - 1))
        try model.dense.load(tensors, itemTables: ActionItemTable.names, itemCount: model.itemCount)
        try model.rows.load(tensors, hasOptimizer: tensors["optim.adam_m.user.embedding.weight"] != nil)
        return model
    }
}

/// An actor-critic model ↔ checkpoint directory (`model_kind` the model's, the config as
/// `model_config`, the keys of the ids as `users.keys`, `items.keys`).
public enum ActorCriticCheckpoint<Model: ActorCriticParameters> {
    public static var modelKind: String { Model.modelKind }

    public struct Snapshot: CheckpointSnapshot, @unchecked Sendable {
        public let model: ActorCriticSnapshot<Model>
        public let keys: BehaviorKeys
        public let record: CheckpointRecord
        public func write(to store: CheckpointStore) throws -> URL {
            try RLCheckpointFiles.write(kind: modelKind, config: configJSON(model.config),
                                        tensors: model.exportTensors(includeOptimizer: true), keys: keys, record: record, to: store)
        }
    }

    public static func snapshot(model: Model, keys: BehaviorKeys, record: CheckpointRecord) -> Snapshot {
        Snapshot(model: model.snapshot(), keys: keys, record: record)
    }

    public static func configJSON(_ config: Model.Config) -> JSONValue { RLCheckpointFiles.configJSON(config) }

    public struct Loaded: Sendable {
        public let model: Model
        public let keys: BehaviorKeys
        public let manifest: CheckpointManifest
        public let directory: URL
    }

    /// Verifies and loads a checkpoint directory; refuses one that does not verify or holds
    /// another family, with every problem in the error.
    public static func load(_ dir: URL, verify: Bool = true) throws -> Loaded {
        let r = try RLCheckpointFiles.read(dir, kind: modelKind, config: Model.Config.self, verify: verify)
        return Loaded(model: try Model.load(config: r.config, tensors: r.tensors, step: r.manifest.step),
                      keys: r.keys, manifest: r.manifest, directory: dir)
    }
}
