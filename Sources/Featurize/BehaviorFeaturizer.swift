// BehaviorFeaturizer: behaviour events (user,item,behavior,time) → `transitions` feature batches,
// plus the state the RL side serves from: each user's recent items and consumed set, and the
// real-time popular items. The engine around it is `FeaturizeEngine`.
//
// Per event (in partition order; events must be keyed by user so a user lives in one partition):
//   * user and item → ids through the shared online dictionaries (sr:rl:u, sr:rl:i: the Criteo
//     grow script with min_frequency 1, so every id is assigned at first sight and identical on
//     every shard). Unknown ids are fetched for a whole poll batch in `prepare`.
//   * popular items: the event counts in its slide bucket (sr:rl:pop:{time / slide}) unless it is
//     LATE — older than the partition's watermark (largest event time seen) minus the allowed
//     lateness — then it counts in sr:rl:late instead. Never dropped silently, never twice.
//   * transitions (`TransitionRule`): the user's events wait in a queue until their return window
//     is known — the oldest becomes a transition once W−1 successors in the session (and at least
//     one) arrived. An event more than the session gap after the user's previous one ends the
//     session: every queued event becomes a transition, the last with done = true. So does the
//     watermark: a user whose newest event's time + gap falls below the partition's watermark −
//     lateness is released at once (whatever comes next must come after the gap). Both rules
//     depend only on the partition's event sequence, so a replay after a crash produces the same
//     transitions. A partition without new events keeps its users' queues pending (in Redis,
//     sr:rl:pending:{topic}:{p}).
//   * the user's history (last H+W items), consumed set (last C distinct) and pending events.
// Everything a unit changed — user states, pending index, popular counts, late/event counters,
// the watermark — is written by the unit's commit script with the batch and the progress: a worker
// killed at any instant resumes from exactly the state that matches its progress.

import Features
import FeatureStore
import Foundation
import Streaming

/// Settings of the behaviour featurizer (configs/featurize.yaml `behavior:`).
public struct BehaviorSettings: Sendable, Equatable {
    /// H: items in a state (DBRL: 10).
    public var historyLength = 10
    /// C: distinct consumed items kept per user (masked by /v1/recommend).
    public var consumedLimit = 100
    /// Reward per behaviour (pv, cart, fav, buy).
    public var rewards: [Float] = [1, 2, 2, 3]
    /// A user's next event more than this later ends the episode (done).
    public var sessionGapSeconds: Int64 = 3600
    /// W: a transition carries the rewards of its action and of the next W−1 events of the
    /// session (REINFORCE's discounted return); 1 = the immediate reward only. 1 by default:
    /// on `gen behavior` data longer windows lose held-out NDCG (docs/BENCHMARKS.md, issue 11).
    public var rewardWindow = 1
    /// Popular items: a sliding event-time window (FlinkRL: 60 min every 80 s).
    public var windowSeconds: Int64 = 3600
    public var slideSeconds: Int64 = 80
    /// Events older than the partition's watermark minus this are late (counted, not in popular).
    public var latenessSeconds: Int64 = 60

    public init() {}

    /// The per-user transition rule these settings describe.
    public var rule: TransitionRule {
        TransitionRule(historyLength: historyLength, consumedLimit: consumedLimit, sessionGapSeconds: sessionGapSeconds, rewards: rewards,
                       rewardWindow: rewardWindow)
    }

    public func validate() throws {
        func bad(_ m: String) -> FeaturizeError { .invalidOptions(m) }
        // A state stores H+W items with a one-byte count.
        guard (1...254).contains(historyLength) else { throw bad("behavior.history_length must be in 1…254, got \(historyLength)") }
        guard rewardWindow >= 1, historyLength + rewardWindow <= 255 else {
            throw bad("behavior.reward_window must be in 1…\(255 - historyLength) (history_length + reward_window ≤ 255), got \(rewardWindow)")
        }
        guard (1...65535).contains(consumedLimit) else { throw bad("behavior.consumed_limit must be in 1…65535, got \(consumedLimit)") }
        guard rewards.count == 4, rewards.allSatisfy(\.isFinite) else { throw bad("behavior.rewards needs a finite reward for each of pv, cart, fav, buy") }
        // Ten years bounds every time span, so time arithmetic cannot overflow.
        let decade: Int64 = 10 * 366 * 86_400
        guard sessionGapSeconds > 0, sessionGapSeconds <= decade else { throw bad("behavior.session_gap_seconds must be in 1…\(decade)") }
        guard windowSeconds <= decade else { throw bad("behavior.window_seconds must be at most \(decade)") }
        guard slideSeconds > 0, windowSeconds >= slideSeconds, windowSeconds % slideSeconds == 0 else {
            throw bad("behavior.window_seconds (\(windowSeconds)) must be a positive multiple of behavior.slide_seconds (\(slideSeconds))")
        }
        guard latenessSeconds >= 0, latenessSeconds <= decade else { throw bad("behavior.lateness_seconds must be in 0…\(decade)") }
    }
}

public final class BehaviorFeaturizer: Featurizer {
    public static let batchKind = FeatureBatchKind.transitions
    public static let inputName = "behavior"

    public let settings: BehaviorSettings
    let rule: TransitionRule
    let layout: FeatureStoreLayout
    let parser = BehaviorParser()
    /// Ids known to this worker; grown only by `prepare`/`load` (no handler runs then).
    var users = BehaviorIdCache()
    var items = BehaviorIdCache()

    public init(settings: BehaviorSettings, prefix: String) {
        self.settings = settings
        rule = settings.rule
        layout = FeatureStoreLayout(prefix: prefix, streams: .transitions)
    }

    // MARK: State

    final class User {
        let id: Int32
        let key: [UInt8]
        var state: UserState
        /// Bumped whenever the pending event changes (heap entries of older ones are stale).
        var seq: UInt32 = 0
        /// The unit (stamp) that last touched this user.
        var stamp: Int = -1
        /// In the partition's pending index as of the last sealed unit (the index changes only
        /// when this does, not at every event).
        var indexed: Bool
        init(id: Int32, key: [UInt8], state: UserState) {
            self.id = id; self.key = key; self.state = state; indexed = !state.pending.isEmpty
        }
    }

    /// A user with pending events, by the time of the newest (the one the session gap counts from).
    struct PendingEntry { var time: Int64; var user: Int32; var seq: UInt32 }

    public final class Partition {
        let partition: Int32
        var users: [Int32: User] = [:]
        /// Largest event time seen (Int64.min: none yet).
        var watermark: Int64 = .min
        /// Pending events by time (a binary min-heap; entries whose seq no longer matches are stale).
        var heap: [PendingEntry] = []
        // The unit in progress.
        var stamp = 0
        var transitions: TransitionBatch
        var touched: [User] = []
        /// Popular counts of the buckets this partition can still add to (the rest are final);
        /// `dirty`: the buckets the unit changed, rewritten whole at commit.
        var popular: [Int64: [Int32: Int64]] = [:]
        var dirty: Set<Int64> = []
        var lastDirty: Int64 = .min
        var late: Int64 = 0
        var events = 0
        var stateScratch: [Int32] = []

        init(partition: Int32, rule: TransitionRule) {
            self.partition = partition
            transitions = rule.emptyBatch()
        }

        func resetUnit() {
            stamp += 1
            transitions.removeAll()
            touched.removeAll(keepingCapacity: true)
            dirty.removeAll(keepingCapacity: true)
            lastDirty = .min
            late = 0
            events = 0
        }

        func push(_ e: PendingEntry) {
            heap.append(e)
            var i = heap.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if heap[parent].time <= heap[i].time { break }
                heap.swapAt(parent, i); i = parent
            }
        }

        func pop() {
            heap.swapAt(0, heap.count - 1)
            heap.removeLast()
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l].time < heap[m].time { m = l }
                if r < heap.count && heap[r].time < heap[m].time { m = r }
                if m == i { break }
                heap.swapAt(i, m); i = m
            }
        }
    }

    public final class Scratch {}

    public func makePartition(_ partition: Int32, batchSize: Int) -> Partition {
        Partition(partition: partition, rule: rule)
    }
    public func makeScratch() -> Scratch { Scratch() }

    // MARK: Start and load

    public func start(_ store: FeatureStore) throws -> String {
        let r = store.redis
        for space in BehaviorIdSpace.allCases {
            try r.command(["SETNX", layout.behaviorNextId(space), "\(space.firstId)"])
        }
        // Every worker must count popular items the same way: the first one records its window.
        // So must they keep user state the same way.
        let mine = ["window_seconds": "\(settings.windowSeconds)", "slide_seconds": "\(settings.slideSeconds)",
                    "lateness_seconds": "\(settings.latenessSeconds)", "history_length": "\(settings.historyLength)",
                    "consumed_limit": "\(settings.consumedLimit)", "session_gap_seconds": "\(settings.sessionGapSeconds)",
                    "reward_window": "\(settings.rewardWindow)",
                    "rewards": Behavior.allCases.map { "\($0.name)=\(rule.reward($0))" }.joined(separator: ",")]
        for (k, v) in mine.sorted(by: { $0.key < $1.key }) { try r.command(["HSETNX", layout.behaviorMeta, k, v]) }
        let stored = try store.hash(layout.behaviorMeta)
        for (k, v) in mine.sorted(by: { $0.key < $1.key }) where stored[k] != v {
            throw FeaturizeError.invalidOptions(
                "behavior \(k) is \(v) here but \(stored[k] ?? "unset") in Redis (\(layout.behaviorMeta)), where the first "
                + "behaviour worker recorded it: run every worker with the same behavior settings, or use a fresh --prefix")
        }
        return "behaviour events → transitions (history \(settings.historyLength), session gap \(settings.sessionGapSeconds) s, reward window \(settings.rewardWindow)); "
            + "popular items over \(settings.windowSeconds) s every \(settings.slideSeconds) s, lateness \(settings.latenessSeconds) s"
    }

    public func refresh(_ store: FeatureStore) throws -> Int { 0 }

    public func load(_ p: Partition, topic: String, partition: Int32, from store: FeatureStore) throws {
        p.users.removeAll()
        p.heap.removeAll()
        p.popular.removeAll()
        p.resetUnit()
        let field = FeatureStoreLayout.lostField(topic: topic, partition: partition)
        let mark = try store.redis.command(["HGET", layout.eventWatermarks, field])
        if mark.isNull { p.watermark = .min } else {
            guard let w = mark.integer else {
                throw FeatureStoreError.unexpectedReply("\(layout.eventWatermarks) field \(field) holds \(mark), not a time; it is written only by featurize --kind behavior")
            }
            p.watermark = w
        }
        try loadPopular(p, topic: topic, partition: partition, store: store)
        // Users whose last event is still pending: the watermark must be able to release them.
        let pending = try store.redis.command(["ZRANGE", layout.pendingUsers(topic: topic, partition: partition), "0", "-1"])
        let keys = (pending.elements ?? []).compactMap(\.bytes)
        try loadUsers(keys, into: p, store: store)
    }

    /// The committed counts of the buckets `p` can still add to (at or after its watermark − lateness).
    func loadPopular(_ p: Partition, topic: String, partition: Int32, store: FeatureStore) throws {
        guard p.watermark != .min else { return }
        let s = settings
        let buckets = Array(EventTime.bucket(p.watermark - s.latenessSeconds, slide: s.slideSeconds)...EventTime.bucket(p.watermark, slide: s.slideSeconds))
        let replies = try store.redis.pipeline(buckets.map { ["GET", layout.popular(bucket: $0, topic: topic, partition: partition)] })
        var loaded: [(bucket: Int64, entries: [(key: [UInt8], count: Int64)])] = []
        var unknown: [[UInt8]] = []
        for (bucket, reply) in zip(buckets, replies) {
            try reply.throwingIfError()
            guard let bytes = reply.bytes else { continue }
            let key = layout.popular(bucket: bucket, topic: topic, partition: partition)
            let entries: [(key: [UInt8], count: Int64)]
            do { entries = try PopularBucket.decode(bytes) } catch {
                throw FeatureStoreError.unexpectedReply("\(key): \(error); it is written only by featurize --kind behavior")
            }
            for e in entries where e.key.withUnsafeBytes({ items.id(of: $0) }) == nil { unknown.append(e.key) }
            loaded.append((bucket, entries))
        }
        var k = 0
        while k < unknown.count {
            let chunk = unknown[k..<min(k + 1000, unknown.count)]
            k = chunk.endIndex
            let reply = try store.redis.command(bytes: [Array("HMGET".utf8), Array(layout.behaviorIdMap(.items).utf8)] + chunk)
            try reply.throwingIfError()
            let ids = reply.elements ?? []
            for (j, key) in chunk.enumerated() {
                guard j < ids.count, let id = ids[j].integer.flatMap({ Int32(exactly: $0) }), id > 1 else {
                    throw FeatureStoreError.dictionaryInconsistent("item \(String(decoding: key, as: UTF8.self)) is counted in a popular bucket but has no id in \(layout.behaviorIdMap(.items))")
                }
                key.withUnsafeBytes { items.learn($0, id: id) }
            }
        }
        for (bucket, entries) in loaded {
            var counts: [Int32: Int64] = [:]
            for e in entries { counts[e.key.withUnsafeBytes { items.id(of: $0) }!, default: 0] += e.count }
            p.popular[bucket] = counts
        }
    }

    /// Loads users (ids from the dictionary, states from sr:rl:user) into `p`.
    func loadUsers(_ keys: [[UInt8]], into p: Partition, store: FeatureStore) throws {
        var k = 0
        while k < keys.count {
            let chunk = keys[k..<min(k + 1000, keys.count)]
            k = chunk.endIndex
            var idCmd: [[UInt8]] = [Array("HMGET".utf8), Array(layout.behaviorIdMap(.users).utf8)]
            var stateCmd: [[UInt8]] = [Array("HMGET".utf8), Array(layout.userStates.utf8)]
            idCmd.append(contentsOf: chunk); stateCmd.append(contentsOf: chunk)
            let replies = try store.redis.pipeline(bytes: [idCmd, stateCmd])
            try replies[0].throwingIfError(); try replies[1].throwingIfError()
            let ids = replies[0].elements ?? [], states = replies[1].elements ?? []
            for (j, key) in chunk.enumerated() {
                guard j < ids.count, let id = ids[j].integer.flatMap({ Int32(exactly: $0) }), id > 0 else {
                    throw FeatureStoreError.dictionaryInconsistent("user \(String(decoding: key, as: UTF8.self)) has a state but no id in \(layout.behaviorIdMap(.users))")
                }
                key.withUnsafeBytes { users.learn($0, id: id) }
                try addUser(id: id, key: key, stateBytes: j < states.count ? states[j].bytes : nil, to: p)
            }
        }
    }

    func addUser(id: Int32, key: [UInt8], stateBytes: [UInt8]?, to p: Partition) throws {
        var state = UserState()
        if let bytes = stateBytes {
            do { state = try UserState.decode(bytes) } catch {
                throw FeatureStoreError.unexpectedReply("\(layout.userStates) field \(String(decoding: key, as: UTF8.self)): \(error); "
                                                        + "it is written only by featurize --kind behavior")
            }
        }
        let user = User(id: id, key: key, state: state)
        p.users[id] = user
        if let newest = state.pending.last { p.push(PendingEntry(time: newest.time, user: id, seq: user.seq)) }
    }

    // MARK: Prepare

    /// What `prepare` learnt about message i of the poll batch, for `handle`: the parsed event
    /// and its ids (the handling threads only read it).
    struct Prepared {
        var event = BehaviorEvent(user: 0..<0, item: 0..<0, behavior: .pv, time: 0)
        var user: Int32 = -1
        var item: Int32 = -1
        var valid = false
    }
    var prepared = UnsafeMutableBufferPointer<Prepared>.allocate(capacity: 0)

    deinit { prepared.deallocate() }

    public func prepare(_ batch: KafkaMessageBatch, partitions: [Partition?], store: FeatureStore) throws {
        if prepared.count < batch.count {
            prepared.deallocate()
            prepared = .allocate(capacity: max(batch.count, 2 * prepared.count))
        }
        func owner(_ i: Int) -> Partition? {
            let p = Int(batch.partition(i))
            return p < partitions.count ? partitions[p] : nil
        }
        var newUsers = CategoryTable(minimumCapacity: 64), newItems = CategoryTable(minimumCapacity: 64)
        for i in 0..<batch.count {
            var pr = Prepared()
            if owner(i) != nil {
                let value = batch.message(i).value
                if let e = try? parser.parse(value) {
                    let u = UnsafeRawBufferPointer(rebasing: value[e.user]), it = UnsafeRawBufferPointer(rebasing: value[e.item])
                    pr = Prepared(event: e, user: users.id(of: u) ?? -1, item: items.id(of: it) ?? -1, valid: true)
                    if pr.user < 0 { newUsers.addCount(field: 0, bytes: u) }
                    if pr.item < 0 { newItems.addCount(field: 0, bytes: it) }
                }
            }
            prepared[i] = pr
        }
        if newUsers.count > 0 || newItems.count > 0 {
            for (space, table) in [(BehaviorIdSpace.users, newUsers), (.items, newItems)] where table.count > 0 {
                var from = 0
                while from < table.count {
                    let range = from..<min(from + 1000, table.count)
                    from = range.upperBound
                    let ids = try store.growDictionary(table, entries: range, namespace: layout.behaviorIds(space))
                    for (k, e) in range.enumerated() {
                        guard let id = ids[k] else {
                            throw FeaturizeError.invalidOptions("\(layout.behaviorIds(space)):dict:meta sets min_frequency above 1; behaviour ids "
                                                                + "must be assigned at first sight — delete that field")
                        }
                        table.bytes(at: e).withUnsafeBytes { b in
                            if space == .users { users.learn(b, id: id) } else { items.learn(b, id: id) }
                        }
                    }
                }
            }
            for i in 0..<batch.count where prepared[i].valid && (prepared[i].user < 0 || prepared[i].item < 0) {
                let value = batch.message(i).value, e = prepared[i].event
                prepared[i].user = users.id(of: UnsafeRawBufferPointer(rebasing: value[e.user])) ?? BehaviorIdSpace.users.oovId
                prepared[i].item = items.id(of: UnsafeRawBufferPointer(rebasing: value[e.item])) ?? BehaviorIdSpace.items.oovId
            }
        }
        // Users not in their partition's memory yet: their committed state from Redis.
        var toLoad: [(Partition, [[UInt8]])] = []
        var slot: [ObjectIdentifier: Int] = [:]
        var seen = Set<Int64>()
        for i in 0..<batch.count where prepared[i].valid {
            guard let p = owner(i) else { continue }
            let id = prepared[i].user
            guard p.users[id] == nil, seen.insert(Int64(p.partition) << 32 | Int64(UInt32(bitPattern: id))).inserted else { continue }
            guard let key = users.bytes(ofId: id) else { continue }
            if let k = slot[ObjectIdentifier(p)] {
                toLoad[k].1.append(key)
            } else {
                slot[ObjectIdentifier(p)] = toLoad.count
                toLoad.append((p, [key]))
            }
        }
        for (p, keys) in toLoad {
            var k = 0
            while k < keys.count {
                let chunk = Array(keys[k..<min(k + 1000, keys.count)])
                k += chunk.count
                let reply = try store.redis.command(bytes: [Array("HMGET".utf8), Array(layout.userStates.utf8)] + chunk)
                try reply.throwingIfError()
                let states = reply.elements ?? []
                for (j, key) in chunk.enumerated() {
                    guard let id = key.withUnsafeBytes({ users.id(of: $0) }) else { continue }
                    try addUser(id: id, key: key, stateBytes: j < states.count ? states[j].bytes : nil, to: p)
                }
            }
        }
    }

    // MARK: Handle

    public func rows(_ p: Partition) -> Int { max(p.events, p.transitions.count) }

    public func handle(_ value: UnsafeRawBufferPointer, index: Int, into p: Partition, scratch: Scratch) -> RowRejection? {
        // `prepare` parsed this message, gave its user and item ids and loaded the user's state.
        let pr = prepared[index]
        guard pr.valid else {
            do throws(RowRejection) { _ = try parser.parse(value) } catch { return error }
            return RowRejection(.emptyId, "event was not prepared (internal error: report it)")
        }
        let e = pr.event, userId = pr.user, item = pr.item
        guard let user = p.users[userId] else {
            return RowRejection(.emptyId, "user was not prepared (internal error: report it)")
        }
        let s = settings
        let watermarkBefore = p.watermark
        p.events += 1
        // Popular items, or late.
        if watermarkBefore != .min && e.time < watermarkBefore - s.latenessSeconds {
            p.late += 1
        } else {
            let bucket = EventTime.bucket(e.time, slide: s.slideSeconds)
            p.popular[bucket, default: [:]][item, default: 0] += 1
            if bucket != p.lastDirty { p.lastDirty = bucket; p.dirty.insert(bucket) }
        }
        if e.time > p.watermark { p.watermark = e.time }
        // Transitions whose windows this event completes (or all, after a session gap); this event is queued.
        rule.apply(user: user.id, item: item, behavior: e.behavior, time: e.time, to: &user.state,
                   into: &p.transitions, scratch: &p.stateScratch)
        user.seq &+= 1
        p.push(PendingEntry(time: e.time, user: userId, seq: user.seq))
        touch(user, p)
        releaseExpired(p)
        return nil
    }

    /// Releases users whose newest pending event the watermark has passed by more than the session
    /// gap: whatever the user does next comes after the gap (or is late), so the episode ended.
    func releaseExpired(_ p: Partition) {
        guard p.watermark != .min else { return }
        let limit = p.watermark - settings.latenessSeconds - settings.sessionGapSeconds
        while let top = p.heap.first, top.time < limit {
            p.pop()
            guard let user = p.users[top.user], user.seq == top.seq, !user.state.pending.isEmpty else { continue }
            rule.release(user: user.id, &user.state, into: &p.transitions, scratch: &p.stateScratch)
            user.seq &+= 1
            touch(user, p)
        }
    }

    @inline(__always) func touch(_ user: User, _ p: Partition) {
        if user.stamp != p.stamp { user.stamp = p.stamp; p.touched.append(user) }
    }

    // MARK: Seal

    public func seal(_ p: Partition, source: FeatureBatchSource, topic: String, partition: Int32) -> SealedUnit {
        var sealed = SealedUnit(encodedBatch: nil, rows: p.transitions.count)
        if p.transitions.count > 0 { sealed.encodedBatch = FeatureBatchCodec.encode(p.transitions, source: source) }
        var writes: [StateWrite] = []
        if !p.touched.isEmpty {
            var states: [[UInt8]] = [], pendingAdd: [[UInt8]] = [], pendingRemove: [[UInt8]] = []
            states.reserveCapacity(2 * p.touched.count)
            for u in p.touched {
                states.append(u.key); states.append(u.state.encoded())
                if let newest = u.state.pending.last {
                    if !u.indexed { pendingAdd.append(decimalBytes(newest.time)); pendingAdd.append(u.key); u.indexed = true }
                } else if u.indexed {
                    pendingRemove.append(u.key); u.indexed = false
                }
            }
            writes.append(StateWrite(.hset, layout.userStates, states))
            let index = layout.pendingUsers(topic: topic, partition: partition)
            if !pendingAdd.isEmpty { writes.append(StateWrite(.zadd, index, pendingAdd)) }
            if !pendingRemove.isEmpty { writes.append(StateWrite(.zrem, index, pendingRemove)) }
        }
        if !p.dirty.isEmpty {
            var index: [[UInt8]] = []
            for bucket in p.dirty.sorted() {
                var blob = PopularBucket.header
                for (item, n) in p.popular[bucket] ?? [:] {
                    items.withBytes(ofId: item) { PopularBucket.append(key: $0, count: n, to: &blob) }
                }
                writes.append(StateWrite(.set, layout.popular(bucket: bucket, topic: topic, partition: partition), [blob]))
                index.append(decimalBytes(bucket)); index.append(Array(layout.popularMember(bucket: bucket, topic: topic, partition: partition).utf8))
            }
            writes.append(StateWrite(.zadd, layout.popularBuckets, index))
        }
        if p.watermark != .min {
            // Buckets below watermark − lateness are final: every later event there is late.
            let final = EventTime.bucket(p.watermark - settings.latenessSeconds, slide: settings.slideSeconds)
            if let oldest = p.popular.keys.min(), oldest < final { p.popular = p.popular.filter { $0.key >= final } }
        }
        let field = Array(FeatureStoreLayout.lostField(topic: topic, partition: partition).utf8)
        if p.watermark != .min {
            writes.append(StateWrite(.hset, layout.eventWatermarks, [field, Array("\(p.watermark)".utf8)]))
            // Buckets that no window can reach any more (this partition's watermark is at most the
            // newest, and later events below watermark − lateness are late).
            let oldest = EventTime.bucket(p.watermark - settings.windowSeconds - settings.latenessSeconds, slide: settings.slideSeconds)
            writes.append(StateWrite(.zprune, layout.popularBuckets, [Array("\(oldest)".utf8), Array(layout.popularBucketPrefix.utf8)]))
        }
        var counters: [[UInt8]] = []
        if p.events > 0 { counters = [field, Array("\(p.events)".utf8)] }
        if !counters.isEmpty { writes.append(StateWrite(.hincrby, layout.behaviorEvents, counters)) }
        if p.late > 0 { writes.append(StateWrite(.hincrby, layout.lateEvents, [field, Array("\(p.late)".utf8)])) }
        sealed.stateWrites = writes
        p.resetUnit()
        return sealed
    }
}
