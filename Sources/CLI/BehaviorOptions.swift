import ArgumentParser
import Features
import Featurize

/// What `featurize --kind` reads.
enum FeaturizeKind: String, ExpressibleByArgument, CaseIterable {
    /// Criteo rows (TSV) → `rows` batches (Wide&Deep).
    case criteo
    /// Behaviour events (Tianchi CSV user,item,behavior,time) → `transitions` batches, user state, popular items (RL).
    case behavior

    var defaultTopic: String { rawValue }
}

/// The behaviour featurizer's settings: `behavior:` in configs/featurize.yaml, each overridable here.
struct BehaviorOptions: ParsableArguments {
    @Option(help: "Items in a transition's state (H). Default 10.")
    var historyLength: Int?

    @Option(help: "Distinct consumed items kept per user (masked when recommending). Default 100.")
    var consumedLimit: Int?

    @Option(help: "A user's next event more than this many seconds later ends the episode (done). Default 3600.")
    var sessionGapSeconds: Int?

    @Option(help: "Popular items: sliding event-time window length in seconds (a multiple of --slide-seconds). Default 3600.")
    var windowSeconds: Int?

    @Option(help: "Popular items: the window slides every this many seconds. Default 80.")
    var slideSeconds: Int?

    @Option(help: "Events older than their partition's watermark minus this many seconds are counted as late. Default 60.")
    var latenessSeconds: Int?

    @Option(help: ArgumentHelp("Reward of a behaviour (repeatable). Defaults pv=1 cart=2 fav=2 buy=3.", valueName: "behavior=reward"))
    var reward: [String] = []

    /// Defaults, then the config file's `behavior:` section, then these flags.
    func settings(file section: [String: Any], path: String?) throws -> BehaviorSettings {
        var s = BehaviorSettings()
        let where_ = path ?? "config"
        func int(_ key: String) throws -> Int? {
            guard let v = section[key] else { return nil }
            if let i = v as? Int { return i }
            throw ValidationError("\(where_): behavior.\(key) must be an integer, got \(v)")
        }
        func setReward(_ name: String, _ value: Any, from: String) throws {
            guard let b = Behavior(name: name) else { throw ValidationError("\(from): unknown behaviour '\(name)' (pv, cart, fav, buy)") }
            guard let r = (value as? Double) ?? (value as? Int).map(Double.init) ?? (value as? String).flatMap(Double.init), r.isFinite else {
                throw ValidationError("\(from): reward of \(name) must be a number, got \(value)")
            }
            s.rewards[Int(b.rawValue)] = Float(r)
        }
        s.historyLength = try historyLength ?? int("history_length") ?? s.historyLength
        s.consumedLimit = try consumedLimit ?? int("consumed_limit") ?? s.consumedLimit
        s.sessionGapSeconds = Int64(try sessionGapSeconds ?? int("session_gap_seconds") ?? Int(s.sessionGapSeconds))
        s.windowSeconds = Int64(try windowSeconds ?? int("window_seconds") ?? Int(s.windowSeconds))
        s.slideSeconds = Int64(try slideSeconds ?? int("slide_seconds") ?? Int(s.slideSeconds))
        s.latenessSeconds = Int64(try latenessSeconds ?? int("lateness_seconds") ?? Int(s.latenessSeconds))
        if let rewards = section["rewards"] {
            guard let map = rewards as? [String: Any] else { throw ValidationError("\(where_): behavior.rewards must map pv/cart/fav/buy to numbers") }
            for (k, v) in map { try setReward(k, v, from: where_ + " behavior.rewards") }
        }
        for item in reward {
            guard let eq = item.firstIndex(of: "=") else { throw ValidationError("--reward expects behavior=reward, got '\(item)'") }
            try setReward(String(item[..<eq]), String(item[item.index(after: eq)...]), from: "--reward")
        }
        do { try s.validate() } catch { throw ValidationError("\(error)") }
        return s
    }
}
