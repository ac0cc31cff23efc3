import Foundation
import Models
import Training

/// The model side of a settings file (`SettingsFile`): `model:`, `train:` and named `presets:`
/// that overlay both.
struct ConfigFile {
    /// `model.kind`: the model family (`ModelFamilies.kinds`; default widedeep).
    var kind = WideDeepCheckpoint.modelKind
    var model: WideDeepConfig
    var train: TrainSettings

    /// The `model:` and `train:` sections of `settings` (built-in defaults where absent), with
    /// `preset` applied if given.
    static func load(_ settings: SettingsFile, preset: String?) throws -> ConfigFile {
        var root = settings.plainValues
        if let preset {
            let presets = root["presets"] as? [String: Any] ?? [:]
            if let overlay = presets[preset] as? [String: Any] {
                root = merge(root, overlay)
            } else if let builtin = WideDeepConfig.preset(preset) {
                var model = root["model"] as? [String: Any] ?? [:]
                model["embedding_size"] = builtin.embeddingSize
                model["deep_layers"] = builtin.deepLayers
                root["model"] = model
            } else {
                throw CLIError("unknown preset '\(preset)'; known: \((Array(presets.keys) + ["large", "small"]).sorted().joined(separator: ", "))")
            }
        }
        let modelSection = root["model"] as? [String: Any] ?? [:]
        let kind = modelSection["kind"].map { "\($0)" } ?? WideDeepCheckpoint.modelKind
        try ModelFamilies.check(kind: kind, what: "model.kind")
        let model: WideDeepConfig = try decode(modelSection, what: "model")
        let train: TrainSettings = try decode(root["train"] ?? [String: Any](), what: "train")
        try model.validate()
        return ConfigFile(kind: kind, model: model, train: train)
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
