// `model:` is decoded by the family `model.kind` names: configs/reinforce.yaml gives a
// ReinforceConfig, Wide&Deep's files and presets behave as before.
import Foundation
import Testing
import Checkpoint
import Models
import Features
import Featurize
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

    @Test("reward_window: featurize.yaml, reinforce.yaml (train --data), BehaviorSettings and TransitionRule agree; flags override; bad values are refused")
    func rewardWindowDefaultsAgree() throws {
        let featurize = try SettingsFile.load(repoRoot.appendingPathComponent("configs/featurize.yaml").path)
        let fromFeaturize = try BehaviorOptions.parse([]).settings(file: featurize.section("behavior")).rewardWindow
        let reinforce = repoRoot.appendingPathComponent("configs/reinforce.yaml").path
        let fromTrain = try Train.parse(["--config", reinforce, "--data", "x.csv"]).fileRule(historyLength: 10)
        #expect(fromFeaturize == BehaviorSettings().rewardWindow && fromTrain.rewardWindow == fromFeaturize
                && TransitionRule().rewardWindow == fromFeaturize)
        #expect(fromTrain == BehaviorSettings().rule)
        #expect(try Train.parse(["--config", reinforce, "--data", "x.csv", "--reward-window", "7"]).fileRule(historyLength: 10).rewardWindow == 7)
        #expect(try BehaviorOptions.parse(["--reward-window", "4"]).settings(file: featurize.section("behavior")).rewardWindow == 4)
        #expect(throws: (any Error).self) { try Train.parse(["--config", reinforce, "--data", "x.csv", "--reward-window", "250"]).fileRule(historyLength: 10) }
        #expect(throws: (any Error).self) { try BehaviorOptions.parse(["--reward-window", "0"]).settings(file: featurize.section("behavior")) }
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
