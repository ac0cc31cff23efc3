import ArgumentParser
import Foundation
import Logging
import Features

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Offline statistics pass: dense min/max and category dictionaries, written as one versioned file.",
        discussion: """
        Dense values are transformed t(x) = sign(x)·log1p(|x|) (Criteo's counts are heavy-tailed) \
        and min/max of t are recorded per field; a row's weight is then (t − min)/(max − min), \
        clamped to [0, 1]. Each categorical field gets a dictionary of the categories seen at least \
        --min-frequency times; rarer ones map to the field's OOV id. Id layout: 0–12 dense values, \
        13–25 dense missing, 26–51 one OOV id per categorical field, 52+ categories, so no two \
        kinds ever share an id. The file is read by the trainer, the feature workers and the server.
        """)

    @Option(help: "Criteo-format input file.") var data: String
    @Option(help: "Output statistics file.") var out: String
    @Option(help: "Minimum count for a category to get its own id.") var minFrequency: Int = 10
    @Flag(help: "Accept 39-field rows without a label.") var unlabelled = false
    @OptionGroup(title: "Logging") var logging: LogOptions

    func validate() throws {
        if minFrequency < 1 { throw ValidationError("--min-frequency must be at least 1 (got \(minFrequency))") }
    }

    func run() throws {
        let logger = try logging.start("stats", tag: "stats:")
        let start = Date()
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: data)[.size] as? Int64) ?? nil
        let bar = Progress(label: "stats \(data)", total: fileSize)
        let (stats, rejections) = try FeatureStats.compute(
            file: data, parser: CriteoParser(labels: unlabelled ? .optional : .required),
            minFrequency: minFrequency, progress: { done, _ in bar.update(done) })
        bar.finish(fileSize ?? 0)
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: out).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        try stats.write(to: URL(fileURLWithPath: out))
        reportRejections(rejections, to: logger)
        logger.info(.init(stringLiteral: String(format: "%d rows, %d rejected, %d categories (min frequency %d), next id %d → %@ (%.1fs)",
            stats.rows, rejections.total, stats.categoryCount, minFrequency, Int(stats.nextId), out,
            Date().timeIntervalSince(start))))
    }
}

/// Logs refused rows (a sample) and counts by reason.
func reportRejections(_ r: RejectionCounts, to logger: Logger) {
    guard r.total > 0 else { return }
    for s in r.samples { logger.warning("rejected \(s)") }
    let byReason = r.byReason.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }
    logger.warning("rejected rows: \(r.total) (\(byReason.joined(separator: ", ")))")
}
