import Foundation
import Checkpoint
import Features
import Models
import Training
@testable import Serving

/// A tiny trained Wide&Deep (embedding 4, one hidden layer of 8) and its feature statistics,
/// built once per test from synthetic rows; `write(step:)` stores versions like the trainer does.
final class TinyModelFixture: @unchecked Sendable {
    let dir: URL
    let root: URL
    let store: CheckpointStore
    let stats: FeatureStats
    let model: WideDeepModel
    /// Unlabelled 39-field rows (the label column stripped from synthetic data).
    let rows: [String]

    init(trainSteps: Int = 3, seed: UInt64 = 7) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("serving-\(UUID().uuidString)")
        root = dir.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let data = dir.appendingPathComponent("train.tsv")
        try writeSynthetic(rows: 400, seed: seed, to: data, probabilitiesTo: dir.appendingPathComponent("train.prob"))
        stats = try FeatureStats.compute(file: data.path, minFrequency: 1).stats
        var config = WideDeepConfig()
        config.embeddingSize = 4
        config.deepLayers = [8]
        model = WideDeepModel(config: config)
        let lines = try String(contentsOf: data, encoding: .utf8).split(separator: "\n").map(String.init)
        rows = lines.prefix(50).map { line in String(line[line.index(after: line.firstIndex(of: "\t")!)...]) }
        let (batches, _) = BatchPacker.pack(lines: lines, encoder: FeatureEncoder(stats: stats), batchSize: 64)
        let ws = model.makeWorkspace(capacity: 64), grads = model.makeGradients()
        for k in 0..<trainSteps { model.trainStep(batches[k % batches.count], workspace: ws, grads: grads) }
        store = CheckpointStore(directory: root, keep: 100)
    }

    /// Trains one more step (so versions differ) and writes checkpoint `step` (into `store`, the
    /// fixture's root by default).
    @discardableResult
    func write(step: Int, train: Bool = true, stats: FeatureStats? = nil, to store: CheckpointStore? = nil,
               newestEventProducedMs: Int64? = nil) throws -> URL {
        if train {
            let lines = rows.map { "1\t" + $0 }
            let batch = BatchPacker.pack(lines: lines, encoder: FeatureEncoder(stats: self.stats), batchSize: 64).batches[0]
            model.trainStep(batch, workspace: model.makeWorkspace(capacity: 64), grads: model.makeGradients())
        }
        let snap = WideDeepCheckpoint.snapshot(model: model, stats: stats ?? self.stats,
                                               record: .init(step: step, samplesTrained: step * 64, wallTimeSeconds: 1,
                                                             metrics: ["auc": 0.5], newestEventProducedMs: newestEventProducedMs))
        return try WideDeepCheckpoint.write(snap, to: store ?? self.store)
    }

    /// Probabilities computed directly: parse with the shared parser, encode with the
    /// checkpoint's stats, predict with the loaded model (independent of the server code).
    func directPredictions(checkpoint: URL, rows: [String]) throws -> [Float] {
        let loaded = try WideDeepCheckpoint.load(checkpoint, verify: true)
        let encoder = FeatureEncoder(stats: loaded.stats)
        let batch = BatchPacker.pack(lines: rows, encoder: encoder, parser: CriteoParser(labels: .optional),
                                     batchSize: rows.count).batches[0]
        return loaded.model.predict(batch, workspace: loaded.model.makeWorkspace(capacity: rows.count))
    }

    /// Statistics of the fixture's training rows with another frequency threshold (a different
    /// dictionary, as a checkpoint written after the dictionary changed would carry).
    func otherStats(minFrequency: Int) throws -> FeatureStats {
        try FeatureStats.compute(file: dir.appendingPathComponent("train.tsv").path, minFrequency: minFrequency).stats
    }

    /// Flips one byte in the middle of a checkpoint's model.safetensors.
    func corrupt(_ checkpoint: URL) throws {
        let url = checkpoint.appendingPathComponent(CheckpointStore.modelFileName)
        var bytes = try Data(contentsOf: url)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: url)
    }

    /// Writes a version with a flipped byte, then points LATEST at it (as a broken trainer might).
    @discardableResult
    func writeCorrupt(step: Int) throws -> URL {
        let url = try write(step: step)
        try corrupt(url)
        return url
    }

    func pointLatest(at name: String) throws {
        let tmp = root.appendingPathComponent("LATEST.tmp")
        try Data((name + "\n").utf8).write(to: tmp)
        guard rename(tmp.path, root.appendingPathComponent("LATEST").path) == 0 else { throw POSIXError(.EIO) }
    }

    deinit { try? FileManager.default.removeItem(at: dir) }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
/// Polls `condition` until it holds or `seconds` pass. Generous on purpose: the suite runs in
/// parallel on 2 shared cores; speed is measured by benchmarks, not by tests.
func eventually(_ seconds: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// `{"I1": 3, …, "C1": "…"}` for a 39-field row (integers only, as synthetic rows are).
func instance(fromRow row: String) -> [String: Any] {
    let fields = row.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
    var object: [String: Any] = [:]
    for i in 0..<13 where !fields[i].isEmpty { object["I\(i + 1)"] = Int(fields[i])! }
    for j in 0..<26 where !fields[13 + j].isEmpty { object["C\(j + 1)"] = fields[13 + j] }
    return object
}

func jsonBody(_ object: Any) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
}

struct PredictResponse: Decodable {
    let model_version: String
    let step: Int
    let probabilities: [Float]
}

extension ModelSlot {
    /// The Wide&Deep version being served (nil when none, or another family's).
    var wideDeep: WideDeepServable? { current(as: WideDeepServable.self) }
}
