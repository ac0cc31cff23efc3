// `model:` decoded through the family table: configs/ddpg.yaml and configs/bcq.yaml give their
// families' configs, `--seed` reaches whichever family, a bad setting is refused by name, an
// unknown kind names every known one.
import Foundation
import Testing
import Checkpoint
import Models
@testable import streamrec

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

@Suite struct ActorCriticConfigFileTests {
    func load(_ name: String, preset: String? = nil) throws -> ConfigFile {
        try ConfigFile.load(try SettingsFile.load(repoRoot.appendingPathComponent("configs/\(name)").path), preset: preset)
    }

    @Test("configs/ddpg.yaml decodes as DDPG's config")
    func ddpgConfig() throws {
        var cfg = try load("ddpg.yaml")
        #expect(cfg.kind == "ddpg")
        let c = try #require(cfg.config(DDPGConfig.self))
        #expect(c.historyLength == 10 && c.embeddingSize == 32 && c.hiddenSize == 64 && c.gamma == 0.99 && c.tau == 0.01)
        #expect(c.bcWeight == 1 && c.actorQWeight == 0.1 && c.learningRate == 3e-3 && c.criticLearningRate == 1e-3 && c.actionInitScale == 1 && c.seed == 42)
        #expect(c.fullSoftmaxItems == 5_000 && c.sampledItems == 1024)
        #expect(c == DDPGConfig(), "the shipped config and the built-in defaults agree")
        #expect(cfg.transitionModel?.historyLength == 10 && cfg.train.batchSize == 64)
        #expect(cfg.modelConfigJSON["history_length"] == .number(10) && cfg.modelConfigJSON["bc_weight"] == .number(1))
        cfg.overrideSeed(9)
        #expect(cfg.config(DDPGConfig.self)?.seed == 9 && cfg.modelConfigJSON["seed"] == .number(9))
        #expect(throws: CLIError.self) { try load("ddpg.yaml", preset: "small") }   // Wide&Deep's presets are Wide&Deep's
    }

    @Test("configs/bcq.yaml decodes as BCQ's config")
    func bcqConfig() throws {
        let cfg = try load("bcq.yaml")
        #expect(cfg.kind == "bcq")
        let c = try #require(cfg.config(BCQConfig.self))
        #expect(c.historyLength == 10 && c.embeddingSize == 32 && c.hiddenSize == 64 && c.latentWidth == 64)
        #expect(c.lambda == 0.75 && c.phi == 0.05 && c.targetSamples == 10 && c.tau == 0.005 && c.klWeight == 0.5 && c.bcWeight == 10)
        #expect(c.fullSoftmaxItems == 5_000 && c.sampledItems == 1024)
        #expect(c == BCQConfig(), "the shipped config and the built-in defaults agree")
        #expect(cfg.config(DDPGConfig.self) == nil && cfg.model == WideDeepConfig())
    }

    @Test("a bad DDPG or BCQ setting is refused naming it; an unknown kind lists the known ones")
    func refusals() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ac-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("c.yaml").path
        for (text, word) in [("model:\n  kind: ddpg\n  tau: 0\n", "tau"), ("model:\n  kind: bcq\n  target_samples: 0\n", "target_samples"),
                             ("model:\n  kind: bcq\n  lambda: nope\n", "model"),
                             ("model:\n  kind: ddpg\n  sampled_items: 0\n", "sampled_items"),
                             ("model:\n  kind: bcq\n  full_softmax_items: 2\n", "full_softmax_items")] {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            do { _ = try ConfigFile.load(try SettingsFile.load(path), preset: nil); Issue.record("accepted \(text)") } catch {
                #expect("\(error)".contains(word), "\(error)")
            }
        }
        try "model:\n  kind: sarsa\n".write(toFile: path, atomically: true, encoding: .utf8)
        do { _ = try ConfigFile.load(try SettingsFile.load(path), preset: nil); Issue.record("accepted kind sarsa") } catch {
            for kind in ["widedeep", "reinforce", "ddpg", "bcq"] { #expect("\(error)".contains(kind), "\(error)") }
        }
    }
}
