import Foundation
import Models
import Training
import Checkpoint

/// The model side of a settings file (`SettingsFile`): `model:`, `train:` and named `presets:`
/// that overlay both. `model.kind` picks the family (`ModelFamilies`), which decodes the rest of
/// `model:`; nothing here knows a family by name.
struct ConfigFile {
    /// `model.kind`: the model family (`ModelFamilies.kinds`; default widedeep).
    var kind = WideDeepCheckpoint.modelKind
    /// The family's settings, decoded and validated by its `ModelFamily.decodeConfig`.
    var family: any ModelFamilyConfig
    var train: TrainSettings

    /// Wide&Deep's settings (kind widedeep; its defaults, unused, for another kind): the Wide&Deep
    /// paths of `train` and `bench` build a `WideDeepModel` from them.
    var model: WideDeepConfig { family as? WideDeepConfig ?? WideDeepConfig() }

    /// The settings of a family that trains on transitions (REINFORCE, DDPG, BCQ); nil for Wide&Deep.
    var transitionModel: (any TransitionModelConfig)? { family as? any TransitionModelConfig }

    /// The family's settings as `C` (nil when `model.kind` is another family).
    func config<C: ModelFamilyConfig>(_ type: C.Type) -> C? { family as? C }

    /// The `model:` and `train:` sections of `settings` (built-in defaults where absent), with
    /// `preset` applied if given.
    static func load(_ settings: SettingsFile, preset: String?) throws -> ConfigFile {
        var root = settings.plainValues
        func kind(of root: [String: Any]) -> String {
            (root["model"] as? [String: Any])?["kind"].map { "\($0)" } ?? WideDeepCheckpoint.modelKind
        }
        // The file's kind offers its built-in presets (a preset of the file may change the kind).
        let base = ModelFamilies.all.first { $0.kind == kind(of: root) }
        if let preset {
            let presets = root["presets"] as? [String: Any] ?? [:]
            if let overlay = presets[preset] as? [String: Any] {
                root = merge(root, overlay)
            } else if let builtin = base?.builtinPreset(preset), let overlay = try plain(builtin) as? [String: Any] {
                root["model"] = merge(root["model"] as? [String: Any] ?? [:], overlay)
            } else {
                throw CLIError("unknown preset '\(preset)'; known: \((Array(presets.keys) + (base?.builtinPresetNames ?? [])).sorted().joined(separator: ", "))")
            }
        }
        let modelSection = root["model"] as? [String: Any] ?? [:]
        let kind = kind(of: root)
        let chosen = try ModelFamilies.family(kind, what: "model.kind")
        let train: TrainSettings = try decode(root["train"] ?? [String: Any](), what: "train")
        let json: JSONValue = try decode(modelSection, what: "model")
        do {
            return ConfigFile(kind: kind, family: try chosen.decodeConfig(json), train: train)
        } catch let error as DecodingError {
            throw CLIError("config section 'model' is invalid: \(error)")
        }
    }

    /// The model's settings as its family records them (a manifest's `model_config`): what
    /// `ModelFamilies.fresh` takes.
    var modelConfigJSON: JSONValue { family.json }

    /// `--seed`: the model's seed, whatever its family.
    mutating func overrideSeed(_ seed: UInt64) { family.seed = seed }

    /// A JSON value as the plain values `SettingsFile` yields (for merging).
    private static func plain(_ value: JSONValue) throws -> Any {
        try JSONSerialization.jsonObject(with: JSONEncoder().encode(value), options: [.fragmentsAllowed])
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
