import ArgumentParser
import FeatureStore
import Foundation
import Streaming

struct Popular: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The real-time popular items: top N over the sliding event-time window of behaviour events.",
        discussion: """
        Sums the slide buckets (sr:rl:pop:{bucket}) that `featurize --kind behavior` commits with \
        each unit: the window_seconds / slide_seconds buckets up to the one holding the newest \
        event-time watermark (FlinkRL: 60 min every 80 s; configs/featurize.yaml `behavior:`). \
        Events older than their partition's watermark minus the allowed lateness are not in the \
        counts; they are counted as late. Ties are broken by item id.
        """)

    @OptionGroup var settings: SettingsOptions

    @OptionGroup(title: "Redis") var store: RedisOptions

    @Option(name: .customLong("n"), help: "How many items.")
    var n: Int = 17

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard n > 0 else { throw ValidationError("--n must be positive") }
    }

    func run() throws {
        let redis = try self.store.resolve(try settings.load())
        let store = FeatureStore(redis: try RedisConnection(address: redis.address.value), prefix: redis.prefix.value)
        let popular = try store.popularItems(n: n)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(popular), as: UTF8.self))
            return
        }
        print(Self.describe(popular))
    }

    /// The human-readable form, shared with `status`.
    static func describe(_ p: PopularItems, indent: String = "") -> String {
        guard let start = p.windowStart, let end = p.windowEnd, let window = p.windowSeconds, let slide = p.slideSeconds else {
            return indent + "no behaviour events counted yet (run `streamrec featurize --kind behavior`)"
        }
        let f = ISO8601DateFormatter()
        func t(_ s: Int64) -> String { f.string(from: Date(timeIntervalSince1970: TimeInterval(s))) }
        var lines = [indent + "popular items in [\(t(start)), \(t(end))) (\(window / 60) min window every \(slide) s; "
                     + "watermark \(p.watermark.map(t) ?? "-"); late events \(p.lateEvents))"]
        let width = p.items.map(\.item.count).max() ?? 4
        for (k, item) in p.items.enumerated() {
            lines.append(indent + String(format: "%3d  ", k + 1) + item.item.padding(toLength: max(width, 4), withPad: " ", startingAt: 0) + "  \(item.count)")
        }
        return lines.joined(separator: "\n")
    }
}
