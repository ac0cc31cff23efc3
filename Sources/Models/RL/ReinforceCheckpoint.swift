import Foundation
import Checkpoint

/// REINFORCE ↔ checkpoint directory: `model.safetensors` (parameters and Adam state) and
/// `manifest.json` (`model_kind: reinforce`, the config as `model_config`). No dictionary: item and
/// user ids are the streaming id spaces' (the behaviour pipeline keeps their keys).
public enum ReinforceCheckpoint {
    public static let modelKind = "reinforce"

    /// An in-memory copy of everything a version holds, cheap to take between steps and safe to
    /// write from another thread while training goes on.
    public struct Snapshot: CheckpointSnapshot, @unchecked Sendable {
        public let model: ReinforceSnapshot
        public let record: CheckpointRecord

        public func write(to store: CheckpointStore) throws -> URL { try ReinforceCheckpoint.write(self, to: store) }
    }

    public static func snapshot(model: ReinforceModel, record: CheckpointRecord) -> Snapshot {
        Snapshot(model: model.snapshot(), record: record)
    }

    /// The config as a manifest records it.
    public static func configJSON(_ config: ReinforceConfig) -> JSONValue {
        // ReinforceConfig encodes to plain JSON, so this cannot fail.
        (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(config))) ?? .null
    }

    /// Writes a snapshot as a new version in `store` (atomic; LATEST updated last).
    @discardableResult
    public static func write(_ snap: Snapshot, to store: CheckpointStore) throws -> URL {
        let manifest = CheckpointManifest(
            modelKind: modelKind, modelConfig: configJSON(snap.model.config), step: snap.record.step,
            samplesTrained: snap.record.samplesTrained, wallTimeSeconds: snap.record.wallTimeSeconds,
            metrics: snap.record.metrics, streamPositions: snap.record.streamPositions, dictionary: nil)
        let tensors = snap.model.exportTensors(includeOptimizer: true).map(\.safeTensor)
        return try store.write(step: snap.record.step, manifest: manifest, files: [
            .safetensors(metadata: ["format": "streamrec-reinforce", "step": String(snap.record.step)], tensors: tensors),
        ])
    }

    public struct Loaded: Sendable {
        public let model: ReinforceModel
        public let manifest: CheckpointManifest
        public let directory: URL
    }

    /// Verifies (checksums, structure) and loads a checkpoint directory; refuses anything that does
    /// not verify or holds another family, with every problem in the error.
    public static func load(_ dir: URL, verify: Bool = true) throws -> Loaded {
        if verify {
            let problems = CheckpointStore.verify(dir)
            if !problems.isEmpty {
                throw CheckpointLoadError("checkpoint \(dir.path) failed verification: " + problems.map(\.description).joined(separator: "; "))
            }
        }
        let manifest = try CheckpointStore.loadManifest(dir)
        guard manifest.modelKind == modelKind else {
            throw CheckpointLoadError("checkpoint \(dir.path) holds a '\(manifest.modelKind)' model, expected '\(modelKind)'")
        }
        let config = try JSONDecoder().decode(ReinforceConfig.self, from: JSONEncoder().encode(manifest.modelConfig))
        let tensors = try ModelTensor.read(dir.appendingPathComponent(CheckpointStore.modelFileName))
        let model = try ReinforceModel.load(config: config, tensors: tensors, step: manifest.step)
        return Loaded(model: model, manifest: manifest, directory: dir)
    }
}
