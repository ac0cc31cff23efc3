import Foundation
import Checkpoint
import Features

/// REINFORCE ↔ checkpoint directory: `model.safetensors` (parameters and Adam state),
/// `manifest.json` (`model_kind: reinforce`, the config as `model_config`) and the keys of the
/// user and item ids (`users.keys`, `items.keys`: `BehaviorKeys`), so evaluation and serving map
/// keys to ids without the feature store.
public enum ReinforceCheckpoint {
    public static let modelKind = "reinforce"

    /// An in-memory copy of everything a version holds, cheap to take between steps and safe to
    /// write from another thread while training goes on.
    public struct Snapshot: CheckpointSnapshot, @unchecked Sendable {
        public let model: ReinforceSnapshot
        public let keys: BehaviorKeys
        public let record: CheckpointRecord

        public func write(to store: CheckpointStore) throws -> URL { try ReinforceCheckpoint.write(self, to: store) }
    }

    public static func snapshot(model: ReinforceModel, keys: BehaviorKeys, record: CheckpointRecord) -> Snapshot {
        Snapshot(model: model.snapshot(), keys: keys, record: record)
    }

    /// The config as a manifest records it.
    public static func configJSON(_ config: ReinforceConfig) -> JSONValue {
        // ReinforceConfig encodes to plain JSON, so this cannot fail.
        (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(config))) ?? .null
    }

    /// Writes a snapshot as a new version in `store` (atomic; LATEST updated last).
    @discardableResult
    public static func write(_ snap: Snapshot, to store: CheckpointStore) throws -> URL {
        var manifest = CheckpointManifest(
            modelKind: modelKind, modelConfig: configJSON(snap.model.config), step: snap.record.step,
            samplesTrained: snap.record.samplesTrained, wallTimeSeconds: snap.record.wallTimeSeconds,
            metrics: snap.record.metrics, streamPositions: snap.record.streamPositions, dictionary: nil)
        manifest.newestEventProducedMs = snap.record.newestEventProducedMs
        let tensors = snap.model.exportTensors(includeOptimizer: true).map(\.safeTensor)
        return try store.write(step: snap.record.step, manifest: manifest, files: [
            .safetensors(metadata: ["format": "streamrec-reinforce", "step": String(snap.record.step)], tensors: tensors),
        ] + snap.keys.files.sorted { $0.key < $1.key }.map { .data($0.key, Data($0.value)) })
    }

    public struct Loaded: Sendable {
        public let model: ReinforceModel
        public let keys: BehaviorKeys
        public let manifest: CheckpointManifest
        public let directory: URL
    }

    /// Verifies (checksums, structure) and loads a checkpoint directory; refuses anything that does
    /// not verify or holds another family, with every problem in the error.
    public static func load(_ dir: URL, verify: Bool = true) throws -> Loaded {
        let manifest = try CheckpointStore.loadManifest(dir, expecting: modelKind, verify: verify)
        let config = try JSONDecoder().decode(ReinforceConfig.self, from: JSONEncoder().encode(manifest.modelConfig))
        let tensors = try ModelTensor.read(dir.appendingPathComponent(CheckpointStore.modelFileName))
        let model = try ReinforceModel.load(config: config, tensors: tensors, step: manifest.step)
        var files: [String: [UInt8]] = [:]
        for name in [BehaviorKeys.usersFileName, BehaviorKeys.itemsFileName] {
            if let d = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) { files[name] = [UInt8](d) }
        }
        let keys = try BehaviorKeys.decode(files: files, what: dir.path)
        return Loaded(model: model, keys: keys, manifest: manifest, directory: dir)
    }
}
