import Foundation
import Models
import Training
import Checkpoint

/// The model side of a settings file (`SettingsFile`): `model:`, `train:` and named `presets:`
/// that overlay both.
struct ConfigFile {
    /// `model.kind`: the model family (`ModelFamilies.kinds`; default widedeep). The rest of
    /// `model:` is decoded by that family's config type.
    var kind = WideDeepCheckpoint.modelKind
    /// Wide&Deep's settings (kind widedeep; its defaults, unused, for another kind).
    var model: WideDeepConfig
    /// REINFORCE's settings (kind reinforce; its defaults, unused, for another kind).
    var reinforce = ReinforceConfig()
    var train: TrainSettings

    /// The `model:` and `train:` sections of `settings` (built-in defaults where absent), with
    /// `preset` applied if given.
    static func load(_ settings: SettingsFile, preset: String?) throws -> ConfigFile {
        var root = settings.plainValues
        func kind(of root: [String: Any]) -> String {
            (root["model"] as? [String: Any])?["kind"].map { "\($0)" } ?? WideDeepCheckpoint.modelKind
        }
        if let preset {
            let presets = root["presets"] as? [String: Any] ?? [:]
            if let overlay = presets[preset] as? [String: Any] {
                root = merge(root, overlay)
            } else if kind(of: root) == WideDeepCheckpoint.modelKind, let builtin = WideDeepConfig.preset(preset) {
                var model = root["model"] as? [String: Any] ?? [:]
                model["embedding_size"] = builtin.embeddingSize
                model["deep_layers"] = builtin.deepLayers
                root["model"] = model
            } else {
                let builtins = kind(of: root) == WideDeepCheckpoint.modelKind ? ["large", "small"] : []
                throw CLIError("unknown preset '\(preset)'; known: \((Array(presets.keys) + builtins).sorted().joined(separator: ", "))")
            }
        }
        let modelSection = root["model"] as? [String: Any] ?? [:]
        let kind = kind(of: root)
        try ModelFamilies.check(kind: kind, what: "model.kind")
        let train: TrainSettings = try decode(root["train"] ?? [String: Any](), what: "train")
        var cfg = ConfigFile(kind: kind, model: WideDeepConfig(), train: train)
        if kind == ReinforceCheckpoint.modelKind {
            cfg.reinforce = try decode(modelSection, what: "model")
            try cfg.reinforce.validate()
        } else {
            cfg.model = try decode(modelSection, what: "model")
            try cfg.model.validate()
        }
        return cfg
    }

    /// The model's settings as its family records them (a manifest's `model_config`): what
    /// `ModelFamilies.fresh` takes.
    var modelConfigJSON: JSONValue {
        kind == ReinforceCheckpoint.modelKind ? ReinforceCheckpoint.configJSON(reinforce) : WideDeepTraining.configJSON(model)
    }

    /// `--seed`: the model's seed, whatever its family.
    mutating func overrideSeed(_ seed: UInt64) {
        model.seed = seed
        reinforce.seed = seed
    }

    static func merge(_ base: [String: Any], _ overlay: [String: Any]) -> [String: Any] {
        var out = base
        for (k, v) in overlay {
            if let sub = v as? [String: Any], let baseSub = base[k] as? [String: Any] {
                out[k] = merge(baseSub, sub)
            } else {
                out[k] = v
            }
        }
        return out
    }

    private static func decode<T: Decodable>(_ value: Any, what: String) throws -> T {
        do {
            let data = try JSONSerialization.data(withJSONObject: value)
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw CLIError("config section '\(what)' is invalid: \(error)")
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
