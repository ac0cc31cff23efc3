import Testing
import Foundation
import Logging
@testable import Training
import Checkpoint
import Features
import Models
import StreamRecNumerics
import TestSupport

func smallTestConfig() -> WideDeepConfig {
    var c = WideDeepConfig()
    c.embeddingSize = 8
    c.deepLayers = [32, 16]
    return c
}

@Suite(.serialized) struct TrainerTests {
    @Test func trainsCheckpointsAndReloadsIdentically() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("train.tsv")
        try writeSynthetic(rows: 2_000, seed: 3, to: data, probabilitiesTo: dir.appendingPathComponent("train.tsv.prob"))
        let (stats, rej) = try FeatureStats.compute(file: data.path, minFrequency: 2)
        #expect(rej.total == 0)
        var settings = TrainSettings()
        settings.batchSize = 250
        settings.checkpointEvery = 3
        settings.keepCheckpoints = 2
        settings.logEvery = 2
        let store = CheckpointStore(directory: dir.appendingPathComponent("ck"), keep: 2)
        let model = WideDeepModel(config: smallTestConfig())
        let src = try FileBatchSource(path: data.path, encoder: FeatureEncoder(stats: stats), batchSize: 250, epochs: 1)
        let logs = CapturedLog()
        let summary = try Trainer(model: model, stats: stats, settings: settings, source: src, store: store, logger: logs.logger("train")).run()

        #expect(summary.steps == 8)
        #expect(summary.samples == 2_000)
        // The seed's loss-line format.
        #expect(logs.lines.contains { $0.hasPrefix("epoch: 1, step: 2, wide_loss: ") && $0.contains(", deep_loss: ") })
        // Checkpoints at 3, 6 and the final 8; keep 2.
        let versions = store.list().map(\.step)
        #expect(versions == [6, 8])
        let latest = try #require(store.latest())
        #expect(latest.lastPathComponent == "step-000000000008")
        #expect(CheckpointStore.verify(latest).isEmpty)
        let manifest = try CheckpointStore.loadManifest(latest)
        #expect(manifest.samplesTrained == 2_000)
        #expect(manifest.step == 8)
        #expect(manifest.modelKind == "widedeep")

        // The checkpoint alone reproduces the model's predictions, bit for bit.
        let loaded = try WideDeepCheckpoint.load(latest)
        #expect(loaded.stats == stats)
        let batch = BatchPacker.pack(lines: try String(contentsOf: data, encoding: .utf8).split(separator: "\n").prefix(100).map(String.init),
                                     encoder: FeatureEncoder(stats: stats), batchSize: 100).batches[0]
        let a = model.predict(batch, workspace: model.makeWorkspace(capacity: 100))
        let b = loaded.model.predict(batch, workspace: loaded.model.makeWorkspace(capacity: 100))
        #expect(a == b)
    }

    @Test func corruptCheckpointIsRefused() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir, keep: 3)
        let model = WideDeepModel(config: smallTestConfig())
        let stats = FeatureStatsBuilder().build(minFrequency: 1)
        let url = try WideDeepCheckpoint.write(WideDeepCheckpoint.snapshot(model: model, stats: stats,
                                                     record: .init(step: 1, samplesTrained: 10, wallTimeSeconds: 1)), to: store)
        _ = try WideDeepCheckpoint.load(url)
        let file = url.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 3] ^= 0xFF
        try bytes.write(to: file)
        #expect(throws: CheckpointLoadError.self) { try WideDeepCheckpoint.load(url) }
    }

    @Test("model families: a checkpoint loads back through the registry by its model_kind; unknown kinds are refused by name")
    func modelFamilyRegistry() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = WideDeepModel(config: smallTestConfig())
        let snapshot = WideDeepTraining(model: model, stats: FeatureStatsBuilder().build(minFrequency: 1), batchSize: 8)
            .snapshot(record: CheckpointRecord(step: 3, samplesTrained: 30, wallTimeSeconds: 1, metrics: ["wide_loss": 0.5]))
        let url = try snapshot.write(to: CheckpointStore(directory: dir, keep: 2))
        let loaded = try ModelFamilies.loadTrainable(url)
        #expect(loaded.kind == "widedeep" && loaded.step == 3)
        #expect((loaded as? WideDeepTraining)?.model.parameterDigest() == model.parameterDigest())
        #expect(throws: CheckpointLoadError.self) { try ModelFamilies.check(kind: "dqn", what: "model.kind") }
        // A manifest naming a kind this build does not know is refused before anything is read.
        let manifestURL = url.appendingPathComponent("manifest.json")
        let text = try String(contentsOf: manifestURL, encoding: .utf8).replacingOccurrences(of: "\"widedeep\"", with: "\"dqn\"")
        try text.write(to: manifestURL, atomically: true, encoding: .utf8)
        do { _ = try ModelFamilies.loadTrainable(url, verify: false); Issue.record("a dqn checkpoint loaded") }
        catch { #expect("\(error)".contains("dqn") && "\(error)".contains("widedeep")) }
    }

    @Test("a Wide&Deep trainer refuses a transitions batch by name")
    func wideDeepRefusesTransitions() throws {
        let training = WideDeepTraining(model: WideDeepModel(config: smallTestConfig()), stats: FeatureStatsBuilder().build(minFrequency: 1), batchSize: 4)
        #expect(training.batchKind == .rows)
        var t = TransitionBatch(historyLength: 2)
        t.append(user: 1, state: [0, 2], action: 3, reward: 1, done: true, time: 0)
        do { try training.check(SourcedBatch(.transitions(t), epoch: 1, positions: ["fs:0": "1-0"])); Issue.record("accepted transitions") } catch {
            #expect("\(error)".contains("transitions") && "\(error)".contains("Wide&Deep"))
        }
    }

    @Test func malformedRowsAreCountedAndSkipped() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("mixed.tsv")
        var gen = SyntheticCriteo(seed: 5)
        var text = ""
        for i in 0..<300 {
            text += gen.nextRow().0.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) } + "\n"
            if i % 100 == 0 { text += "1\tnot-a-number" + String(repeating: "\t", count: 38) + "\n" }   // non-numeric dense
            if i % 150 == 0 { text += "garbage line\n" }                                                  // wrong field count
        }
        try text.write(to: data, atomically: true, encoding: .utf8)
        let (stats, _) = try FeatureStats.compute(file: data.path, minFrequency: 1)
        let src = try FileBatchSource(path: data.path, encoder: FeatureEncoder(stats: stats), batchSize: 64, epochs: 1)
        let model = WideDeepModel(config: smallTestConfig())
        var settings = TrainSettings(); settings.batchSize = 64; settings.checkpointEvery = 0
        let summary = try Trainer(model: model, stats: stats, settings: settings, source: src, store: nil, logger: CapturedLog().logger()).run()
        #expect(summary.samples == 300)
        #expect(summary.rejected == 5)
        #expect(src.rejections.byReason[.nonNumericDense] == 3)
        #expect(src.rejections.byReason[.wrongFieldCount] == 2)
    }

    /// A small model trained on synthetic data learns most of what the planted model knows.
    @Test func learnsThePlantedModel() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("all.tsv")
        try writeSynthetic(rows: 24_000, seed: 11, to: data, probabilitiesTo: dir.appendingPathComponent("all.prob"))
        let lines = try String(contentsOf: data, encoding: .utf8).split(separator: "\n").map(String.init)
        let probs = try String(contentsOf: dir.appendingPathComponent("all.prob"), encoding: .utf8).split(separator: "\n").map { Float($0)! }
        let trainPath = dir.appendingPathComponent("train.tsv"), testPath = dir.appendingPathComponent("test.tsv")
        try (lines[..<20_000].joined(separator: "\n") + "\n").write(to: trainPath, atomically: true, encoding: .utf8)
        try (lines[20_000...].joined(separator: "\n") + "\n").write(to: testPath, atomically: true, encoding: .utf8)
        let (stats, _) = try FeatureStats.compute(file: trainPath.path, minFrequency: 3)
        var settings = TrainSettings(); settings.batchSize = 200; settings.checkpointEvery = 0; settings.epochs = 2
        var cfg = smallTestConfig()
        cfg.deepOptimizer.learningRate = 1e-3
        cfg.embeddingOptimizer.learningRate = 1e-3
        let model = WideDeepModel(config: cfg)
        let src = try FileBatchSource(path: trainPath.path, encoder: FeatureEncoder(stats: stats), batchSize: 200, epochs: 2)
        _ = try Trainer(model: model, stats: stats, settings: settings, source: src, store: nil, logger: CapturedLog().logger()).run()
        let eval = try evaluate(model: model, stats: stats, path: testPath.path)
        let labels = lines[20_000...].map { Float($0.prefix(1))! }
        let oracle = rocAUC(scores: Array(probs[20_000...]), labels: labels)!
        let auc = try #require(eval.auc)
        #expect(eval.rows == 4_000)
        #expect(auc > 0.70, "held-out AUC \(auc), oracle \(oracle)")
        #expect(oracle - auc < 0.12, "held-out AUC \(auc), oracle \(oracle)")
    }
}
