import Checkpoint
/// Training-loop settings (the `train:` section of a config file).
public struct TrainSettings: Codable, Sendable, Equatable {
    public var batchSize = 1000
    public var epochs = 1
    public var checkpointEvery = 100
    public var keepCheckpoints = 5
    public var logEvery = 10
    public var minFrequency = 10
    public var blasThreads = 1

    public init() {}

    enum CodingKeys: String, CodingKey {
        case batchSize = "batch_size", epochs, checkpointEvery = "checkpoint_every"
        case keepCheckpoints = "keep_checkpoints", logEvery = "log_every"
        case minFrequency = "min_frequency", blasThreads = "blas_threads"
    }

    /// Settings come from YAML and flags: each is checked here with a message naming it.
    public func validate() throws {
        func fail(_ m: String) -> CheckpointLoadError { CheckpointLoadError("invalid train settings: \(m)") }
        if batchSize < 1 { throw fail("batch_size (--batch-size) must be at least 1 (got \(batchSize))") }
        if epochs < 1 { throw fail("epochs (--epochs) must be at least 1 (got \(epochs))") }
        if checkpointEvery < 0 { throw fail("checkpoint_every (--checkpoint-every) must be 0 (only at the end) or more (got \(checkpointEvery))") }
        if keepCheckpoints < 1 { throw fail("keep_checkpoints (--keep) must be at least 1 (got \(keepCheckpoints))") }
        if logEvery < 1 { throw fail("log_every (--log-every) must be at least 1 (got \(logEvery))") }
        if minFrequency < 1 { throw fail("min_frequency (--min-frequency) must be at least 1 (got \(minFrequency))") }
        if blasThreads < 1 { throw fail("blas_threads must be at least 1 (got \(blasThreads))") }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainSettings()
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? d.epochs
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? d.checkpointEvery
        keepCheckpoints = try c.decodeIfPresent(Int.self, forKey: .keepCheckpoints) ?? d.keepCheckpoints
        logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery) ?? d.logEvery
        minFrequency = try c.decodeIfPresent(Int.self, forKey: .minFrequency) ?? d.minFrequency
        blasThreads = try c.decodeIfPresent(Int.self, forKey: .blasThreads) ?? d.blasThreads
    }
}
