import Testing
import Foundation
@testable import Training
import Checkpoint
import Features
import Models

// The family table: one entry per kind, each of which decodes its own default config, builds a
// fresh model of its kind and restores that model from its exported state.

@Suite struct ModelFamiliesTests {
    @Test("every family in the table decodes its defaults, trains a fresh model of its kind, and restores it from its state")
    func everyEntryIsComplete() throws {
        #expect(ModelFamilies.kinds == ["widedeep", "reinforce", "ddpg", "bcq"])
        let defaults: [String: any ModelFamilyConfig] = ["widedeep": WideDeepConfig.small, "reinforce": ReinforceConfig(),
                                                         "ddpg": DDPGConfig(), "bcq": BCQConfig()]
        let stats = Data(FeatureStatsBuilder().build(minFrequency: 1).serialized())
        for family in ModelFamilies.all {
            let config = try #require(defaults[family.kind])
            let decoded = try family.decodeConfig(config.json)
            #expect(decoded.json == config.json, "\(family.kind)")
            let sidecars = family.kind == "widedeep" ? [WideDeepCheckpoint.statsFileName: stats] : [:]
            let model = try family.fresh(config.json, sidecars, 8)
            #expect(model.kind == family.kind && model.step == 0)
            let restored = try ModelFamilies.restore(model.exportState(), batchSize: 8)
            #expect(restored.kind == family.kind && restored.parameterDigest == model.parameterDigest)
            #expect(throws: (any Error).self) { try family.decodeConfig(["history_length": -1, "embedding_size": -1, "field_count": -1]) }
        }
        #expect(throws: CheckpointLoadError.self) { try ModelFamilies.check(kind: "sarsa", what: "model.kind") }
    }
}
