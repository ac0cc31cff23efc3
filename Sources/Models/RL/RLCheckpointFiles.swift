import Foundation
import Checkpoint

// The checkpoint directory of an RL family whose state is tensors and a config (no dictionary:
// item and user ids are the streaming id spaces'): `model.safetensors` and `manifest.json` with
// `model_kind` and the config as `model_config`. Shared by DDPG and BCQ.

enum RLCheckpointFiles {
    /// The config as a manifest records it (plain JSON, so this cannot fail).
    static func configJSON<C: Encodable>(_ config: C) -> JSONValue {
        (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(config))) ?? .null
    }

    /// Writes a version (atomic; LATEST updated last).
    static func write(kind: String, config: JSONValue, tensors: [ModelTensor], record: CheckpointRecord,
                      to store: CheckpointStore) throws -> URL {
        let manifest = CheckpointManifest(
            modelKind: kind, modelConfig: config, step: record.step,
            samplesTrained: record.samplesTrained, wallTimeSeconds: record.wallTimeSeconds,
            metrics: record.metrics, streamPositions: record.streamPositions, dictionary: nil)
        return try store.write(step: record.step, manifest: manifest, files: [
            .safetensors(metadata: ["format": "streamrec-\(kind)", "step": String(record.step)], tensors: tensors.map(\.safeTensor)),
        ])
    }

    /// Verifies (checksums, structure) and reads a version of `kind`: its manifest, its config and
    /// its tensors; refuses anything that does not verify or holds another family.
    static func read<C: Decodable>(_ dir: URL, kind: String, config: C.Type, verify: Bool) throws
        -> (manifest: CheckpointManifest, config: C, tensors: [String: ModelTensor]) {
        if verify {
            let problems = CheckpointStore.verify(dir)
            if !problems.isEmpty {
                throw CheckpointLoadError("checkpoint \(dir.path) failed verification: " + problems.map(\.description).joined(separator: "; "))
            }
        }
        let manifest = try CheckpointStore.loadManifest(dir)
        guard manifest.modelKind == kind else {
            throw CheckpointLoadError("checkpoint \(dir.path) holds a '\(manifest.modelKind)' model, expected '\(kind)'")
        }
        let config = try JSONDecoder().decode(C.self, from: JSONEncoder().encode(manifest.modelConfig))
        let tensors = try ModelTensor.read(dir.appendingPathComponent(CheckpointStore.modelFileName))
        return (manifest, config, tensors)
    }
}
