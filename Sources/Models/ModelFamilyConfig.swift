import Foundation
import Checkpoint

/// A model family's settings: the `model:` section of a config file and the `model_config` of a
/// checkpoint manifest. Decoding takes the defaults for absent keys and ignores `kind`.
public protocol ModelFamilyConfig: Codable, Sendable {
    /// The seed of every random initial value (`--seed` overrides it).
    var seed: UInt64 { get set }
    /// Rejects settings the model cannot run, with a message naming the setting.
    func validate() throws
}

extension ModelFamilyConfig {
    /// The settings as a manifest records them (plain JSON, so encoding cannot fail).
    public var json: JSONValue {
        (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(self))) ?? .null
    }

    /// Decodes and validates settings recorded as JSON (a manifest's `model_config`, a config's
    /// `model:` section).
    public static func decode(_ json: JSONValue) throws -> Self {
        let config = try JSONDecoder().decode(Self.self, from: JSONEncoder().encode(json))
        try config.validate()
        return config
    }
}

/// The settings the families that train on transitions (REINFORCE, DDPG, BCQ) share.
public protocol TransitionModelConfig: ModelFamilyConfig {
    /// Items in a state: the behaviour featurizer's and the file reader's history length.
    var historyLength: Int { get }
    var embeddingSize: Int { get }
    var hiddenSize: Int { get }
}

extension WideDeepConfig: ModelFamilyConfig {}
extension ReinforceConfig: TransitionModelConfig {}
extension DDPGConfig: TransitionModelConfig {}
extension BCQConfig: TransitionModelConfig {}
