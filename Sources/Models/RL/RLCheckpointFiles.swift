import Foundation
import Checkpoint
import Features

// The checkpoint directory of an RL family whose state is tensors, a config and the keys of its
// ids: `model.safetensors`, `manifest.json` with `model_kind` and the config as `model_config`,
// and `users.keys`, `items.keys` (`BehaviorKeys`, as REINFORCE's), so evaluation and serving map
// keys to ids without the feature store. Shared by DDPG and BCQ.

enum RLCheckpointFiles {
    /// The config as a manifest records it (plain JSON, so this cannot fail).
    static func configJSON<C: Encodable>(_ config: C) -> JSONValue {
        (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(config))) ?? .null
    }

    /// Writes a version (atomic; LATEST updated last).
    static func write(kind: String, config: JSONValue, tensors: [ModelTensor], keys: BehaviorKeys, record: CheckpointRecord,
                      to store: CheckpointStore) throws -> URL {
        var manifest = CheckpointManifest(
            modelKind: kind, modelConfig: config, step: record.step,
            samplesTrained: record.samplesTrained, wallTimeSeconds: record.wallTimeSeconds,
            metrics: record.metrics, streamPositions: record.streamPositions, dictionary: nil)
        manifest.newestEventProducedMs = record.newestEventProducedMs
        return try store.write(step: record.step, manifest: manifest, files: [
            .safetensors(metadata: ["format": "streamrec-\(kind)", "step": String(record.step)], tensors: tensors.map(\.safeTensor)),
        ] + keys.files.sorted { $0.key < $1.key }.map { .data($0.key, Data($0.value)) })
    }

    /// Verifies (checksums, structure) and reads a version of `kind`: its manifest, its config,
    /// its tensors and its keys; refuses anything that does not verify or holds another family.
    static func read<C: Decodable>(_ dir: URL, kind: String, config: C.Type, verify: Bool) throws
        -> (manifest: CheckpointManifest, config: C, tensors: [String: ModelTensor], keys: BehaviorKeys) {
        let manifest = try CheckpointStore.loadManifest(dir, expecting: kind, verify: verify)
        let config = try JSONDecoder().decode(C.self, from: JSONEncoder().encode(manifest.modelConfig))
        let tensors = try ModelTensor.read(dir.appendingPathComponent(CheckpointStore.modelFileName))
        var files: [String: [UInt8]] = [:]
        for name in [BehaviorKeys.usersFileName, BehaviorKeys.itemsFileName] {
            if let d = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) { files[name] = [UInt8](d) }
        }
        return (manifest, config, tensors, try BehaviorKeys.decode(files: files, what: dir.path))
    }
}
