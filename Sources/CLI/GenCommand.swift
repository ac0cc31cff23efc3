import ArgumentParser
import Foundation
import Features

struct Gen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write synthetic Criteo-format rows from a planted model, with each row's true click probability.",
        discussion: """
        Rows follow Criteo's day-file layout (label, 13 integer counts, 26 hashed categories; \
        empty = missing). Categories are Zipf-distributed over fields of very different \
        cardinality; dense counts are log-normal with missing values; the click probability has a \
        non-linear interaction the deep part can learn. Beside FILE, FILE.prob holds the true \
        probability of each row, so a model's AUC can be compared with the oracle's. \
        --holdout-rows writes further rows from the same planted model to a second file.
        """)

    @Option(help: "Rows to write to --out.") var rows: Int = 100_000
    @Option(help: "Output file (Criteo TSV).") var out: String
    @Option(help: "Additional held-out rows from the same planted model.") var holdoutRows: Int = 0
    @Option(help: "File for the held-out rows (default: OUT with .test before the extension).") var holdoutOut: String?
    @Option(help: "Seed of the planted model and the samples.") var seed: UInt64 = 1
    @Flag(help: "Omit the label column (rows for inference).") var unlabelled = false

    func validate() throws {
        if rows < 0 || holdoutRows < 0 { throw ValidationError("row counts must be non-negative") }
    }

    func run() throws {
        var cfg = SyntheticCriteo.Configuration.default
        cfg.labelled = !unlabelled
        var gen = SyntheticCriteo(seed: seed, configuration: cfg)
        try write(&gen, rows: rows, to: out)
        if holdoutRows > 0 {
            let path = holdoutOut ?? Self.holdoutPath(for: out)
            try write(&gen, rows: holdoutRows, to: path)
        }
    }

    static func holdoutPath(for out: String) -> String {
        let url = URL(fileURLWithPath: out)
        let ext = url.pathExtension
        let base = url.deletingPathExtension().path
        return ext.isEmpty ? base + ".test" : base + ".test." + ext
    }

    private func write(_ gen: inout SyntheticCriteo, rows: Int, to path: String) throws {
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        let data = try BufferedFileWriter(path: path, atomic: true)
        let probs = try BufferedFileWriter(path: path + ".prob", atomic: true)
        let progress = Progress(label: "gen \(path)", total: Int64(rows))
        for i in 0..<rows {
            let p = gen.appendRow(to: &data.buffer)
            data.buffer.append(0x0A)
            try probs.write(Array(String(format: "%.6f\n", p).utf8))
            try data.maybeFlush()
            try probs.maybeFlush()
            if i & 0x3FFF == 0 { progress.update(Int64(i)) }
        }
        try data.close()
        try probs.close()
        progress.finish(Int64(rows))
        FileHandle.standardError.write(Data("wrote \(rows) rows to \(path) (probabilities in \(path).prob)\n".utf8))
    }
}
