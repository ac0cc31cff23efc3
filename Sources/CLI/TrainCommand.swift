import ArgumentParser
import Foundation
import Checkpoint
import Features
import Models
import StreamRecNumerics
import Training

enum SourceKind: String, ExpressibleByArgument, CaseIterable {
    case file
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train Wide&Deep from a Criteo file (single process) and write checkpoints.",
        discussion: """
        Logs `epoch: E, step: S, wide_loss: …, deep_loss: …` every train.log_every steps with \
        throughput and progressive-validation AUC (each batch scored before it is trained on). \
        Writes a checkpoint (model.safetensors, features.stats, manifest.json) every \
        --checkpoint-every steps and at the end, keeping the newest --keep; LATEST names the newest. \
        Without --stats the statistics pass runs on the training file first.
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Where batches come from.") var source: SourceKind = .file
    @Option(help: "Criteo-format training file (--source file).") var data: String?
    @Option(help: "Feature statistics file from `streamrec stats`.") var stats: String?
    @Option(help: "Directory for checkpoint versions.") var checkpointDir: String = "checkpoints"
    @Option(help: "Override train.epochs.") var epochs: Int?
    @Option(help: "Override train.checkpoint_every (steps).") var checkpointEvery: Int?
    @Option(help: "Override train.keep_checkpoints.") var keep: Int?
    @Option(help: "Override train.log_every (steps).") var logEvery: Int?
    @Option(help: "Override train.min_frequency for the statistics pass.") var minFrequency: Int?

    func validate() throws {
        if source == .file && data == nil { throw ValidationError("--source file needs --data FILE") }
    }

    func run() throws {
        var cfg = try model.load()
        if let epochs { cfg.train.epochs = epochs }
        if let checkpointEvery { cfg.train.checkpointEvery = checkpointEvery }
        if let keep { cfg.train.keepCheckpoints = keep }
        if let logEvery { cfg.train.logEvery = logEvery }
        if let minFrequency { cfg.train.minFrequency = minFrequency }
        BLAS.setThreads(cfg.train.blasThreads)
        let data = data!

        let featureStats: FeatureStats
        if let stats {
            featureStats = try FeatureStats.read(from: URL(fileURLWithPath: stats))
        } else {
            log("no --stats given: running the statistics pass on \(data) (min frequency \(cfg.train.minFrequency))")
            let (s, r) = try FeatureStats.compute(file: data, minFrequency: cfg.train.minFrequency)
            reportRejections(r)
            featureStats = s
        }
        let store = CheckpointStore(directory: URL(fileURLWithPath: checkpointDir), keep: cfg.train.keepCheckpoints)
        let wd = WideDeepModel(config: cfg.model)
        let src = try FileBatchSource(path: data, encoder: FeatureEncoder(stats: featureStats),
                                      batchSize: cfg.train.batchSize, epochs: cfg.train.epochs) { r in
            FileHandle.standardError.write(Data("rejected \(r)\n".utf8))
        }
        log("training Wide&Deep: embedding \(cfg.model.embeddingSize), deep \(cfg.model.deepLayers), batch \(cfg.train.batchSize), \(cfg.train.epochs) epoch(s), \(featureStats.categoryCount) categories")
        let trainer = Trainer(model: wd, stats: featureStats, settings: cfg.train, source: src, store: store) { log($0) }
        let s = try trainer.run()
        log(String(format: "done: %d steps, %d samples in %.1fs (%.0f samples/s), progressive AUC %@, log loss %.4f, %d rows rejected; checkpoint %@",
                   s.steps, s.samples, s.seconds, Double(s.samples) / max(s.seconds, 1e-9),
                   s.progressiveAUC.map { String(format: "%.4f", $0) } ?? "n/a", s.progressiveLogLoss, s.rejected,
                   s.lastCheckpoint?.path ?? "none"))
    }
}

/// One line to stdout, unbuffered (logs are tailed by `cluster/` scripts and tests).
func log(_ s: String) {
    FileHandle.standardOutput.write(Data((s + "\n").utf8))
}
