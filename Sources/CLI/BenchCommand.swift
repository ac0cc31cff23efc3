import ArgumentParser
import Foundation
import StreamRecNumerics
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure StreamRec's speed (see docs/BENCHMARKS.md).",
        subcommands: [BenchTrain.self])
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training throughput on pre-encoded in-memory batches vs this machine's sgemm.",
        discussion: """
        Prints samples/s, the model's training FLOPs per sample (6 × dense multiply-adds: \
        forward, weight gradients, input gradients), the sgemm GFLOP/s this process reaches on \
        the model's largest GEMM (batch × first layer × input width), and their ratio.
        """)

    @OptionGroup var model: ModelOptions

    @Option(help: "Timed training steps.")
    var steps: Int = 20

    @Option(help: "OpenBLAS threads (the targets are for 1).")
    var threads: Int = 1

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let cfg = try model.load()
        BLAS.setThreads(threads)
        let result = runTrainBenchmark(config: cfg.model, preset: model.preset ?? "large",
                                       batchSize: cfg.train.batchSize, steps: steps)
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(result), as: UTF8.self))
        } else {
            print(String(format: """
            preset %@  batch %d  steps %d  blas threads %d
            samples/s          %.0f
            flops/sample       %d
            achieved GFLOP/s   %.2f
            sgemm GFLOP/s      %.2f  (m×n×k = %@)
            ratio              %.3f
            step               %.1f ms
            resident           %.1f MiB  (model+optimizer state %.1f MiB, ratio %.2f, %d sparse rows)
            """, result.preset, result.batchSize, result.steps, result.blasThreads, result.samplesPerSecond,
                         result.flopsPerSample, result.achievedGFLOPS, result.sgemmGFLOPS,
                         result.sgemmShape.map(String.init).joined(separator: "×"), result.ratio,
                         result.stepMilliseconds, Double(result.residentBytes) / 1048576,
                         Double(result.modelStateBytes) / 1048576, result.memoryRatio, result.sparseRows))
        }
    }
}
