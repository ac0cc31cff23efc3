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

    @Option(help: "Rewards per transition (W): the action's and its next W−1 events' in the session, for REINFORCE's discounted return; 1 = the immediate reward only. Default 1.")
    var rewardWindow: Int?

    @Option(help: "Popular items: sliding event-time window length in seconds (a multiple of --slide-seconds). Default 3600.")
    var windowSeconds: Int?

    @Option(help: "Popular items: the window slides every this many seconds. Default 80.")
    var slideSeconds: Int?

    @Option(help: "Events older than their partition's watermark minus this many seconds are counted as late. Default 60.")
    var latenessSeconds: Int?

    @Option(help: ArgumentHelp("Reward of a behaviour (repeatable). Defaults pv=1 cart=2 fav=2 buy=3.", valueName: "behavior=reward"))
    var reward: [String] = []

    /// Defaults, then the settings file's `behavior:` section, then these flags.
    func settings(file section: SettingsSection) throws -> BehaviorSettings {
        try section.checkKeys(["history_length", "consumed_limit", "session_gap_seconds", "reward_window", "window_seconds",
                               "slide_seconds", "lateness_seconds", "rewards"])
        var s = BehaviorSettings()
        func setReward(_ name: String, _ value: String, from: String) throws {
            guard let b = Behavior(name: name) else { throw ValidationError("\(from): unknown behaviour '\(name)' (pv, cart, fav, buy)") }
            guard let r = Double(value), r.isFinite else { throw ValidationError("\(from): reward of \(name) must be a number, got \(value)") }
            s.rewards[Int(b.rawValue)] = Float(r)
        }
        s.historyLength = try historyLength ?? section.positiveInt("history_length") ?? s.historyLength
        s.consumedLimit = try consumedLimit ?? section.positiveInt("consumed_limit") ?? s.consumedLimit
        s.sessionGapSeconds = Int64(try sessionGapSeconds ?? section.positiveInt("session_gap_seconds") ?? Int(s.sessionGapSeconds))
        s.rewardWindow = try rewardWindow ?? section.positiveInt("reward_window") ?? s.rewardWindow
        s.windowSeconds = Int64(try windowSeconds ?? section.positiveInt("window_seconds") ?? Int(s.windowSeconds))
        s.slideSeconds = Int64(try slideSeconds ?? section.positiveInt("slide_seconds") ?? Int(s.slideSeconds))
        s.latenessSeconds = Int64(try latenessSeconds ?? section.nonNegativeInt("lateness_seconds") ?? Int(s.latenessSeconds))
        for (k, v) in try section.properties("rewards") { try setReward(k, v, from: "\(section.file) \(section.name).rewards") }
        for item in reward {
            guard let eq = item.firstIndex(of: "=") else { throw ValidationError("--reward expects behavior=reward, got '\(item)'") }
            try setReward(String(item[..<eq]), String(item[item.index(after: eq)...]), from: "--reward")
        }
        do { try s.validate() } catch { throw ValidationError("\(error)") }
        return s
    }
}
