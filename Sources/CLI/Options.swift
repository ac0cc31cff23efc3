import ArgumentParser

/// `--config` and `--preset`, shared by every command that builds a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model and training settings (YAML).")
    var config: String = "configs/widedeep.yaml"

    @Option(help: "A named preset from the config file (e.g. small).")
    var preset: String?

    @Option(help: "Override train.batch_size.")
    var batchSize: Int?

    @Option(help: "Override model.seed.")
    var seed: UInt64?

    func load() throws -> ConfigFile {
        var cfg = try ConfigFile.load(path: config, preset: preset)
        if let batchSize { cfg.train.batchSize = batchSize }
        if let seed { cfg.model.seed = seed }
        return cfg
    }
}
