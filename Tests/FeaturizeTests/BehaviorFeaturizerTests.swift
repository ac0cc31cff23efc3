import Features
import FeatureStore
import Featurize
import Foundation
import StreamRecNumerics
import Streaming
import Testing
import TestSupport

/// A behaviour event as the tests generate it.
struct TestEvent: Equatable {
    var user: String, item: String, behavior: String, time: Int64
    var line: String { "\(user),\(item),\(behavior),\(time)" }
}

/// Events of `users` users over `items` items (skewed), in time order with jitter: some events
/// come up to `jitter` seconds out of order (late ones among them), sessions separated by hours.
func behaviourEvents(_ n: Int, users: Int, items: Int, seed: UInt64, jitter: Int64 = 150) -> [TestEvent] {
    var rng = SplitMix64(seed: seed)
    var clock: Int64 = 1_700_000_000
    let kinds = ["pv", "pv", "pv", "pv", "pv", "cart", "fav", "buy"]
    var out: [TestEvent] = []
    for _ in 0..<n {
        // Mostly seconds apart; now and then a gap of hours (a new session for everyone).
        clock += rng.next() % 50 == 0 ? Int64(3_600 + Int(rng.next() % 7_200)) : Int64(rng.next() % 20)
        let u = Int(rng.next() % UInt64(users))
        let r = Double(rng.next() % 1_000_000) / 1_000_000
        let item = Int(Double(items) * r * r)   // skewed towards small ids
        let t = clock - (rng.next() % 10 == 0 ? Int64(rng.next() % UInt64(jitter)) : 0)
        out.append(TestEvent(user: "u\(u)", item: "i\(item)", behavior: kinds[Int(rng.next() % UInt64(kinds.count))], time: t))
    }
    return out
}

/// The plain reference: what the behaviour featurizer must produce, computed per partition in
/// event order with dictionaries and brute-force scans (no heap, no units, no Redis).
struct BehaviourReference {
    struct Transition: Hashable, Comparable {
        var user: String, state: [String], action: String, rewards: [Float], done: Bool, time: Int64
        static func < (a: Self, b: Self) -> Bool {
            (a.user, a.time, a.action, a.state.joined(separator: ","), a.done ? 1 : 0) < (b.user, b.time, b.action, b.state.joined(separator: ","), b.done ? 1 : 0)
        }
    }
    struct Pending: Equatable { var time: Int64, reward: Float }
    struct User: Equatable { var history: [String] = [], consumed: [String] = [], pending: [Pending] = [] }
    var transitions: [Transition] = []
    var users: [String: User] = [:]
    var buckets: [Int64: [String: Int64]] = [:]
    var watermarks: [Int32: Int64] = [:]
    var late: Int64 = 0
    let s: BehaviorSettings

    init(settings: BehaviorSettings, partitions: [Int32: [TestEvent]]) {
        s = settings
        let rewards = ["pv": s.rewards[0], "cart": s.rewards[1], "fav": s.rewards[2], "buy": s.rewards[3]]
        for (p, events) in partitions {
            var wm: Int64? = nil
            var members: Set<String> = []
            for e in events {
                if let w = wm, e.time < w - s.latenessSeconds { late += 1 }
                else { buckets[Int64((Double(e.time) / Double(s.slideSeconds)).rounded(.down)), default: [:]][e.item, default: 0] += 1 }
                wm = max(wm ?? e.time, e.time)
                members.insert(e.user)
                var u = users[e.user] ?? User()
                let r = rewards[e.behavior]!
                if let last = u.pending.last, e.time - last.time > s.sessionGapSeconds {
                    releaseAll(e.user, &u)
                } else if u.pending.count + 1 >= max(s.rewardWindow, 2) {
                    // The new event completes the oldest pending event's window of W rewards.
                    emit(e.user, u, 0, Array((u.pending.map(\.reward) + [r]).prefix(s.rewardWindow)), done: false)
                    u.pending.removeFirst()
                }
                u.history.append(e.item)
                if u.history.count > s.historyLength + s.rewardWindow { u.history.removeFirst() }
                u.consumed.removeAll { $0 == e.item }
                u.consumed.append(e.item)
                if u.consumed.count > s.consumedLimit { u.consumed.removeFirst() }
                u.pending.append(Pending(time: e.time, reward: r))
                users[e.user] = u
                // Release every user whose newest pending event the watermark has left more than a gap behind.
                for name in members.sorted() {
                    guard var v = users[name], let t = v.pending.last?.time, t < wm! - s.latenessSeconds - s.sessionGapSeconds else { continue }
                    releaseAll(name, &v)
                    users[name] = v
                }
            }
            watermarks[p] = wm
        }
    }

    /// The session ended: every pending event, its rewards those still queued then zeros, the last done.
    mutating func releaseAll(_ name: String, _ u: inout User) {
        for i in u.pending.indices {
            emit(name, u, i, Array(u.pending[i...].map(\.reward).prefix(s.rewardWindow)), done: i == u.pending.count - 1)
        }
        u.pending = []
    }

    /// Pending event i's transition (its action is the history's item pending.count − i from the end).
    mutating func emit(_ name: String, _ u: User, _ i: Int, _ known: [Float], done: Bool) {
        let at = u.history.count - u.pending.count + i
        let before = Array(u.history[..<at].suffix(s.historyLength))
        transitions.append(Transition(user: name, state: Array(repeating: "", count: s.historyLength - before.count) + before,
                                      action: u.history[at], rewards: known + Array(repeating: 0, count: s.rewardWindow - known.count),
                                      done: done, time: u.pending[i].time))
    }

    /// Top `n` of the window ending at the newest watermark, as `streamrec popular` computes it.
    func popular(_ n: Int) -> [PopularItems.Item] {
        guard let newest = watermarks.values.max() else { return [] }
        let end = Int64((Double(newest) / Double(s.slideSeconds)).rounded(.down))
        var totals: [String: Int64] = [:]
        for b in (end - s.windowSeconds / s.slideSeconds + 1)...end { for (i, c) in buckets[b] ?? [:] { totals[i, default: 0] += c } }
        return totals.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(n).map { PopularItems.Item(item: $0.key, count: $0.value) }
    }
}

/// What the feature store holds, in strings: transitions of every stream entry, user states.
struct StoredBehaviour {
    var transitions: [BehaviourReference.Transition] = []
    var users: [String: BehaviourReference.User] = [:]
    var batches: [SourcedTransitionBatch] = []

    init(redis: RedisConnection, prefix: String = "sr", featureShards: Int) throws {
        func names(_ key: String) throws -> [Int32: String] {
            let kv = try redis.command(["HGETALL", key]).elements ?? []
            var out: [Int32: String] = [:]
            var i = 0
            while i + 1 < kv.count { out[Int32(kv[i + 1].integer!)] = kv[i].text!; i += 2 }
            return out
        }
        let layout = FeatureStoreLayout(prefix: prefix, streams: .transitions)
        let userNames = try names(layout.behaviorIdMap(.users)), itemNames = try names(layout.behaviorIdMap(.items))
        func item(_ id: Int32) -> String { id == TransitionBatch.paddingItem ? "" : itemNames[id] ?? "?\(id)" }
        for s in 0..<featureShards {
            for entry in try redis.command(["XRANGE", layout.featureStream(s), "-", "+"]).elements ?? [] {
                let kv = entry.elements![1].elements!
                let b = try FeatureBatchCodec.decodeTransitions(kv[1].bytes!)
                batches.append(b)
                for k in 0..<b.batch.count {
                    transitions.append(.init(user: userNames[b.batch.users[k]] ?? "?", state: b.batch.state(k).map(item),
                                             action: item(b.batch.actions[k]), rewards: Array(b.batch.rewardRow(k)), done: b.batch.done[k],
                                             time: b.batch.times[k]))
                }
            }
        }
        for (name, st) in try FeatureStore(redis: redis, prefix: prefix).allUserStates() {
            users[name] = .init(history: st.history.map(item), consumed: st.consumed.map(item),
                                pending: st.pending.map { .init(time: $0.time, reward: $0.reward) })
        }
    }
}

/// Produces behaviour lines keyed by user: user k goes to partition k mod `partitions`.
@discardableResult
func produceBehaviour(_ events: [TestEvent], topic: String, bootstrap: String, partitions: Int) throws -> [Int32: [TestEvent]] {
    let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: bootstrap, ["linger.ms": "5"]))
    var byPartition: [Int32: [TestEvent]] = [:]
    for e in events {
        let p = Int32(Int(e.user.dropFirst())! % partitions)
        try producer.produce(topic: topic, partition: p, key: Array(e.user.utf8), value: Array(e.line.utf8))
        byPartition[p, default: []].append(e)
    }
    try producer.flush(timeout: .seconds(30))
    #expect(producer.deliveryStats.failed == 0)
    return byPartition
}

/// A redis-server and a Kafka broker of `kind` (the mock by default) with topic "beh" of
/// `partitions` partitions; `stop()` ends both.
final class BehaviourRig {
    let redis: RedisServerFixture
    let cluster: TestKafkaBroker
    var address: String { "127.0.0.1:\(redis.port)" }
    init(partitions: Int, broker kind: KafkaBrokerKind = .mock) throws {
        redis = try RedisServerFixture()
        do {
            cluster = try startBroker(kind, topics: ["beh": partitions])
        } catch { redis.stop(); throw error }
    }
    func stop() { cluster.stop(); redis.stop() }
}

@Suite("behaviour featurizer (Kafka: mock, one test also noida-db; real Redis) against a plain reference", .serialized, .timeLimit(.minutes(5)))
struct BehaviorFeaturizerTests {
    static func settings() -> BehaviorSettings {
        var s = BehaviorSettings()
        s.historyLength = 4
        s.consumedLimit = 6
        s.sessionGapSeconds = 600
        s.windowSeconds = 1_200
        s.slideSeconds = 80
        s.latenessSeconds = 60
        s.rewardWindow = 3
        return s
    }

    @Test("transitions, user states and popular counts equal the reference (1 and 2 parse threads)", arguments: [1, 2])
    func matchesReference(parseThreads: Int) throws {
        let rig = try BehaviourRig(partitions: 3)
        defer { rig.stop() }
        let (redis, cluster) = (rig.redis, rig.cluster)
        let events = behaviourEvents(6_000, users: 150, items: 400, seed: 11)
        let placed = try produceBehaviour(events, topic: "beh", bootstrap: cluster.bootstrapServers, partitions: 3)
        let settings = Self.settings()
        var o = options(topic: "beh", bootstrap: cluster.bootstrapServers, redis: "127.0.0.1:\(redis.port)", batchSize: 97,
                        featureShards: 2, parseThreads: parseThreads)
        o.statsSource = ""
        let w = WorkerThread(options: o, featurizer: BehaviorFeaturizer(settings: settings, prefix: "sr"))
        let summary = try w.join()
        #expect(summary.deadLetters == 0)
        let reference = BehaviourReference(settings: settings, partitions: placed)
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        let stored = try StoredBehaviour(redis: conn, featureShards: 2)
        #expect(reference.late > 0, "the events include late ones")
        #expect(reference.transitions.contains { $0.done } && reference.transitions.contains { !$0.done })
        #expect(stored.transitions.count == reference.transitions.count)
        #expect(stored.transitions.sorted() == reference.transitions.sorted() ? true : false, "transitions differ from the reference")
        #expect(summary.rows == Int64(reference.transitions.count))
        #expect(stored.users.count == reference.users.count)
        for (name, want) in reference.users { #expect(stored.users[name] == want, "user \(name)") }
        let store = FeatureStore(redis: conn)
        let popular = try store.popularItems(n: 1_000)
        #expect(popular.items == reference.popular(1_000) ? true : false, "popular counts differ from the reference")
        #expect(popular.lateEvents == reference.late)
        let status = try store.behaviorStatus()
        #expect(status.events == Int64(events.count) && status.transitionsAppended == Int64(reference.transitions.count))
        #expect(status.usersWithState == Int64(reference.users.count) && status.lateEvents == reference.late)
        #expect(status.popular.items == Array(reference.popular(5)))
        #expect(try store.status().behavior == status)
        // Every batch is of kind `transitions` and names its source range; the Criteo reader refuses it by name.
        for b in stored.batches { #expect(b.source.topic == "beh" && b.batch.historyLength == settings.historyLength && b.batch.rewardWindow == 3) }
        #expect(reference.transitions.contains { $0.rewards.allSatisfy { $0 > 0 } }, "some windows are full")
        let raw = try conn.command(["XRANGE", "sr:rl:fs:0", "-", "+", "COUNT", "1"]).elements![0].elements![1].elements![1].bytes!
        #expect(throws: FeatureBatchCodecError.self) { _ = try FeatureBatchCodec.decode(raw) }
        do { _ = try FeatureBatchCodec.decode(raw) } catch {
            #expect(error.kind == .unexpectedKind && error.description.contains("`transitions`"), "\(error)")
        }
    }

    @Test("a second pass over the same topic after a restart changes nothing, and bad events are dead letters (mock and noida-db)",
          arguments: KafkaBrokerKind.allCases)
    func restartAndDeadLetters(broker kind: KafkaBrokerKind) throws {
        let rig = try BehaviourRig(partitions: 2, broker: kind)
        defer { rig.stop() }
        let (redis, cluster) = (rig.redis, rig.cluster)
        let events = behaviourEvents(1_500, users: 40, items: 100, seed: 5)
        let first = Array(events.prefix(900)), second = Array(events.dropFirst(900))
        var placed = try produceBehaviour(first, topic: "beh", bootstrap: cluster.bootstrapServers, partitions: 2)
        let settings = Self.settings()
        func run() throws -> FeaturizeSummary {
            var o = options(topic: "beh", bootstrap: cluster.bootstrapServers, redis: "127.0.0.1:\(redis.port)", batchSize: 50, featureShards: 2)
            o.statsSource = ""
            return try WorkerThread(options: o, featurizer: BehaviorFeaturizer(settings: settings, prefix: "sr")).join()
        }
        _ = try run()
        // Bad events between good ones: each refused with its reason, nothing else changes.
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: cluster.bootstrapServers))
        let bad = ["u1,i1,pv", "u1,,pv,1700000000", "u1,i1,click,1700000000", "u1,i1,pv,17e8", "", "u1,i1,pv," + String(repeating: "9", count: 5000)]
        for line in bad { try producer.produce(topic: "beh", partition: 1, key: Array("u1".utf8), value: Array(line.utf8)) }
        try producer.flush(timeout: .seconds(10))
        let more = try produceBehaviour(second, topic: "beh", bootstrap: cluster.bootstrapServers, partitions: 2)
        for (p, e) in more { placed[p, default: []] += e }
        let summary = try run()
        #expect(summary.deadLetters == Int64(bad.count))
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        let reasons = try FeatureStore(redis: conn).hash("sr:deadletter:count")
        #expect(reasons == ["missing_field": "1", "empty_id": "1", "unknown_behavior": "1", "bad_time": "1", "empty_line": "1", "line_too_long": "1"])
        // The worker restarted from Redis (state reloaded, pending users included): same as one pass.
        let reference = BehaviourReference(settings: settings, partitions: placed)
        let stored = try StoredBehaviour(redis: conn, featureShards: 2)
        #expect(stored.transitions.sorted() == reference.transitions.sorted() ? true : false, "transitions differ from the reference")
        for (name, want) in reference.users { #expect(stored.users[name] == want, "user \(name)") }
        #expect(try FeatureStore(redis: conn).popularItems(n: 50).items == reference.popular(50))
    }
}
