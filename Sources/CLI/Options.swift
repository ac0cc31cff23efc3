import ArgumentParser

/// `--config` and `--preset`, shared by every command that builds a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model and training settings (YAML): model:, train:, presets: (and redis: for train --source redis).")
    var config: String = "configs/widedeep.yaml"

    @Option(help: "A named preset from the config file (e.g. small).")
    var preset: String?

    @Option(help: "Override train.batch_size.")
    var batchSize: Int?

    @Option(help: "Override model.seed.")
    var seed: UInt64?

    /// The --config file, read once; other sections of it (redis:) serve the command's other options.
    func settings() throws -> SettingsFile { try SettingsFile.load(config) }

    func load(_ settings: SettingsFile) throws -> ConfigFile {
        var cfg = try ConfigFile.load(settings, preset: preset)
        if let batchSize { cfg.train.batchSize = batchSize }
        if let seed { cfg.overrideSeed(seed) }
        return cfg
    }

    func load() throws -> ConfigFile { try load(settings()) }
}
