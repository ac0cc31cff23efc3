// `model:` is decoded by the family `model.kind` names: configs/reinforce.yaml gives a
// ReinforceConfig, Wide&Deep's files and presets behave as before.
import Foundation
import Testing
import Checkpoint
import Models
@testable import streamrec

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

@Suite struct ReinforceConfigFileTests {
    @Test("configs/reinforce.yaml decodes as REINFORCE's config; widedeep.yaml as Wide&Deep's")
    func modelSectionDecodesPerKind() throws {
        let rl = try ConfigFile.load(try SettingsFile.load(repoRoot.appendingPathComponent("configs/reinforce.yaml").path), preset: nil)
        #expect(rl.kind == "reinforce")
        let c = try #require(rl.config(ReinforceConfig.self))
        #expect(c.historyLength == 10 && c.embeddingSize == 32 && c.hiddenSize == 64 && c.topK == 10)
        #expect(c.gamma == 0.99 && c.weightCap == 1 && c.learningRate == 3e-3 && c.seed == 42)
        // The shipped config and the built-in defaults agree.
        #expect(c == ReinforceConfig())
        #expect(rl.train.batchSize == 64)
        #expect(rl.modelConfigJSON["history_length"] == .number(10) && rl.modelConfigJSON["hidden_size"] == .number(64))
        var seeded = rl
        seeded.overrideSeed(9)
        #expect(seeded.config(ReinforceConfig.self)?.seed == 9 && seeded.modelConfigJSON["seed"] == .number(9))
        // Wide&Deep's presets are Wide&Deep's: REINFORCE has none built in.
        #expect(throws: CLIError.self) { try ConfigFile.load(try SettingsFile.load(repoRoot.appendingPathComponent("configs/reinforce.yaml").path), preset: "small") }

        let wd = try ConfigFile.load(try SettingsFile.load(repoRoot.appendingPathComponent("configs/widedeep.yaml").path), preset: "small")
        #expect(wd.kind == "widedeep" && wd.model.embeddingSize == 16 && wd.model.deepLayers == [400, 400, 400])
        #expect(wd.modelConfigJSON["embedding_size"] == .number(16))
    }

    @Test("an invalid REINFORCE setting is refused naming it")
    func invalidSettingIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rl-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("rl.yaml").path
        try "model:\n  kind: reinforce\n  top_k: 0\n".write(toFile: path, atomically: true, encoding: .utf8)
        do { _ = try ConfigFile.load(try SettingsFile.load(path), preset: nil); Issue.record("accepted top_k 0") } catch {
            #expect("\(error)".contains("top_k"))
        }
    }

    @Test("train refuses a file of the other family's format before training on it")
    func trainRefusesTheOtherFamilysFormat() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let behaviour = dir.appendingPathComponent("user_behavior.csv").path
        try "u1,i1,pv,1511544070\nu1,i2,buy,1511544080\n".write(toFile: behaviour, atomically: true, encoding: .utf8)
        let criteo = repoRoot.appendingPathComponent("Tests/CLITests/Fixtures/criteo_format_sample.tsv").path
        let wd = try StreamRecBinary.run(["train", "--config", repoRoot.appendingPathComponent("configs/widedeep.yaml").path,
                                          "--data", behaviour, "--checkpoint-dir", dir.appendingPathComponent("ck1").path])
        #expect(wd.status != 0 && wd.stderr.contains("holds behaviour events") && wd.stderr.contains("configs/reinforce.yaml"), "\(wd.stderr)")
        let rl = try StreamRecBinary.run(["train", "--config", repoRoot.appendingPathComponent("configs/reinforce.yaml").path,
                                          "--data", criteo, "--checkpoint-dir", dir.appendingPathComponent("ck2").path])
        #expect(rl.status != 0 && rl.stderr.contains("holds Criteo rows"), "\(rl.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("ck1").path))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("ck2").path))
    }
}
