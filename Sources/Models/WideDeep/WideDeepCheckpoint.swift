import Foundation
import Checkpoint
import Features

/// Wide&Deep ↔ checkpoint directory: `model.safetensors` (parameters and optimizer state),
/// `features.stats` (the dictionary snapshot the model was trained with) and `manifest.json`.
/// A checkpoint serves on its own: config, dictionaries and normalisation all travel with it.
public enum WideDeepCheckpoint {
    public static let modelKind = "widedeep"
    public static let statsFileName = "features.stats"

    public typealias Record = CheckpointRecord

    /// An in-memory copy of everything a checkpoint holds, cheap to take between steps (a few
    /// memcpys) and safe to write from another thread while training goes on.
    public struct Snapshot: CheckpointSnapshot, @unchecked Sendable {
        public let model: WideDeepSnapshot
        public let stats: FeatureStats
        public let record: Record

        public func write(to store: CheckpointStore) throws -> URL { try WideDeepCheckpoint.write(self, to: store) }
    }

    public static func snapshot(model: WideDeepModel, stats: FeatureStats, record: Record) -> Snapshot {
        Snapshot(model: model.snapshot(), stats: stats, record: record)
    }

    /// Writes a snapshot as a new version in `store` (atomic; LATEST updated last).
    @discardableResult
    public static func write(_ snap: Snapshot, to store: CheckpointStore) throws -> URL {
        let configJSON = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(snap.model.config))
        var manifest = CheckpointManifest(
            modelKind: modelKind, modelConfig: configJSON, step: snap.record.step,
            samplesTrained: snap.record.samplesTrained, wallTimeSeconds: snap.record.wallTimeSeconds,
            metrics: snap.record.metrics, streamPositions: snap.record.streamPositions,
            dictionary: statsFileName)
        manifest.newestEventProducedMs = snap.record.newestEventProducedMs
        let tensors = snap.model.exportTensors(includeOptimizer: true).map(\.safeTensor)
        return try store.write(step: snap.record.step, manifest: manifest, files: [
            .safetensors(metadata: ["format": "streamrec-widedeep", "step": String(snap.record.step)], tensors: tensors),
            .data(statsFileName, Data(snap.stats.serialized())),
        ])
    }

    public struct Loaded: Sendable {
        public let model: WideDeepModel
        public let stats: FeatureStats
        public let manifest: CheckpointManifest
        public let directory: URL
    }

    /// Verifies (checksums, structure) and loads a checkpoint directory. Refuses anything that
    /// does not verify, with every problem in the error.
    public static func load(_ dir: URL, verify: Bool = true) throws -> Loaded {
        let manifest = try CheckpointStore.loadManifest(dir, expecting: modelKind, verify: verify)
        let config = try JSONDecoder().decode(WideDeepConfig.self, from: JSONEncoder().encode(manifest.modelConfig))
        let tensors = try ModelTensor.read(dir.appendingPathComponent(CheckpointStore.modelFileName))
        let model = try WideDeepModel.load(config: config, tensors: tensors, step: manifest.step)
        let statsName = manifest.dictionary ?? statsFileName
        let stats = try FeatureStats.read(from: dir.appendingPathComponent(statsName))
        return Loaded(model: model, stats: stats, manifest: manifest, directory: dir)
    }
}
