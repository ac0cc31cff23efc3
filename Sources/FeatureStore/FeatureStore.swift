// FeatureStore: the Swift API over the Redis layout in `FeatureStoreLayout.swift`.
//
// Every multi-key write is ONE Lua script (atomic on the server): `commit(_:)` for a unit of work
// (batch + dead letters + lost rows + progress), `growDictionary(counts:)` for online ids.
// Scripts run with EVALSHA and fall back to EVAL on NOSCRIPT (e.g. after a Redis restart).
//
// Threading: a `FeatureStore` uses one `RedisConnection`; give each thread its own store.
// Errors: `RedisError` when Redis is unreachable or the connection drops (the caller retries the
// same call: every write here is idempotent through the progress check or HSET semantics),
// `FeatureStoreError` for contract violations.

import Crypto
import Features
import Foundation
import Streaming

public enum FeatureStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The unit starts after the stored progress: offsets in between would be uncovered.
    case gap(topic: String, partition: Int32, progress: Int64, firstOffset: Int64)
    /// Redis holds a dictionary loaded from a different statistics file.
    case snapshotMismatch(String)
    /// The local dictionary cache disagrees with Redis (corrupt or foreign data).
    case dictionaryInconsistent(String)
    /// A reply had an unexpected shape.
    case unexpectedReply(String)
    /// The unit's lease token is no longer the partition's (the lease expired or another worker
    /// took the partition): nothing was written. `owner` is the current holder, if any.
    case fenced(topic: String, partition: Int32, token: Int64, owner: String?)

    public var description: String {
        switch self {
        case let .gap(t, p, progress, first):
            "commit gap on \(t)/\(p): stored progress is \(progress) but the unit starts at \(first); "
                + "the worker must rewind to \(progress) (was Redis restored from an older AOF/RDB?)"
        case let .snapshotMismatch(m): m
        case let .dictionaryInconsistent(m): "feature dictionary inconsistent: \(m)"
        case let .unexpectedReply(m): "unexpected Redis reply: \(m)"
        case let .fenced(t, p, token, owner):
            "commit of \(t)/\(p) fenced: lease token \(token) is no longer valid (partition now "
                + (owner.map { "held by \($0)" } ?? "without an owner") + "); nothing was written"
        }
    }
}

/// One refused row, stored in the dead-letter stream with its reason.
public struct DeadLetter: Sendable, Equatable {
    public var raw: [UInt8]
    public var offset: Int64
    public var reason: String
    public var detail: String
    public init(raw: [UInt8], offset: Int64, reason: String, detail: String) {
        self.raw = raw; self.offset = offset; self.reason = reason; self.detail = detail
    }
}

/// What one commit writes: the Kafka range [firstOffset, lastOffset] of one partition, the batch
/// encoded from its valid rows (nil when there are none), its dead letters and rows lost upstream.
public struct CommitUnit: Sendable {
    public var topic: String
    public var partition: Int32
    public var firstOffset: Int64
    public var lastOffset: Int64
    public var shard: Int
    public var encodedBatch: [UInt8]?
    public var rows: Int
    public var deadLetters: [DeadLetter]
    public var lostRows: Int64
    public var worker: String
    /// The fencing token of the worker's lease on the partition (`PartitionLeases`): the commit
    /// script writes nothing unless the lease still holds this token. nil = unfenced (tools and
    /// tests that own the store alone; feature workers always set it).
    public var leaseToken: Int64? = nil
    /// The featurizer's state changes (behaviour user states, popular counts, watermarks),
    /// written in the same script as the batch and the progress.
    public var stateWrites: [StateWrite]

    public init(topic: String, partition: Int32, firstOffset: Int64, lastOffset: Int64, shard: Int,
                encodedBatch: [UInt8]?, rows: Int, deadLetters: [DeadLetter] = [], lostRows: Int64 = 0,
                worker: String = "", stateWrites: [StateWrite] = []) {
        precondition(lastOffset >= firstOffset - 1, "a unit covers [firstOffset, lastOffset]")
        self.topic = topic; self.partition = partition; self.firstOffset = firstOffset; self.lastOffset = lastOffset
        self.shard = shard; self.encodedBatch = encodedBatch; self.rows = rows; self.deadLetters = deadLetters
        self.lostRows = lostRows; self.worker = worker; self.stateWrites = stateWrites
    }
}

/// One state change a featurizer adds to its unit's commit. The commit script applies them in
/// order after the progress check, so they happen exactly when the unit is committed.
public struct StateWrite: Sendable, Equatable {
    public enum Operation: String, Sendable {
        /// HSET key f1 v1 f2 v2 … (args: field, value pairs).
        case hset = "HSET"
        /// ZREM key m1 m2 …
        case zrem = "ZREM"
        /// HINCRBY key f d for each (field, delta) pair.
        case hincrby = "HINCRBY"
        /// SET key value (args: [value]).
        case set = "SET"

        /// ZADD key s1 m1 s2 m2 … (args: score, member pairs).
        case zadd = "ZADD"
        /// args: [score, key prefix]: every member of the sorted set `key` with a score below
        /// `score` is removed, and the key `prefix .. member` deleted (expiring time buckets).
        case zprune = "ZPRUNE"
    }
    public var operation: Operation
    public var key: [UInt8]
    public var args: [[UInt8]]
    public init(_ operation: Operation, _ key: [UInt8], _ args: [[UInt8]]) { self.operation = operation; self.key = key; self.args = args }
    public init(_ operation: Operation, _ key: String, _ args: [[UInt8]]) { self.init(operation, Array(key.utf8), args) }
}

public enum CommitOutcome: Sendable, Equatable {
    /// Written; `streamId` is the feature-stream entry id (nil when the unit had no rows).
    case committed(streamId: String?)
    /// Already covered by an earlier commit (retry after a crash or lost reply); nothing written.
    case duplicate(progress: Int64)
}

/// A Lua script run by EVALSHA with a fallback to EVAL.
struct LuaScript: Sendable {
    let source: String
    let sha: String
    init(_ source: String) {
        self.source = source
        self.sha = Self.sha1(source)
    }

    /// The script's SHA-1 in hex, as Redis names it for EVALSHA (an identifier, not a security use).
    static func sha1(_ source: String) -> String {
        Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    func run(_ redis: RedisConnection, keys: [[UInt8]], args: [[UInt8]]) throws(RedisError) -> RedisReply {
        var argv: [[UInt8]] = [Array("EVALSHA".utf8), Array(sha.utf8), Array("\(keys.count)".utf8)]
        argv.reserveCapacity(3 + keys.count + args.count)
        argv.append(contentsOf: keys); argv.append(contentsOf: args)
        let first: Result<RedisReply, RedisError>
        do { first = .success(try redis.command(bytes: argv)) }
        catch { first = .failure(error) }
        if case .failure(let error) = first, case .server(let message) = error, message.hasPrefix("NOSCRIPT") {
            argv[0] = Array("EVAL".utf8); argv[1] = Array(source.utf8)
            return try redis.command(bytes: argv)
        }
        return try first.get()
    }
}

public final class FeatureStore: @unchecked Sendable {
    public let redis: RedisConnection
    public let layout: FeatureStoreLayout
    /// Dead letters kept in the stream (older ones are trimmed approximately; counts stay exact).
    public var deadLetterMaxLength = 100_000
    /// Raw bytes kept per dead letter (longer rows are truncated; the detail says so).
    public static let deadLetterMaxRawBytes = 64 * 1024

    public init(redis: RedisConnection, prefix: String = "sr", streams: FeatureBatchKind = .rows) {
        self.redis = redis
        self.layout = FeatureStoreLayout(prefix: prefix, streams: streams)
    }

    public init(redis: RedisConnection, layout: FeatureStoreLayout) {
        self.redis = redis
        self.layout = layout
    }

    // MARK: Commit

    // KEYS: 1 progress, 2 feature stream, 3 appended, 4 rows, 5 dead letters, 6 dead-letter counts,
    // 7 lost, 8 the partition's lease. ARGV: 1 firstOffset, 2 new progress, 3 batch bytes ('' =
    // none), 4 rows, 5 lost rows, 6 lost field, 7 topic, 8 partition, 9 worker, 10 dead-letter
    // MAXLEN, 11 dead letters D, 12 lease token ('' = unfenced), then D × (raw, offset, reason,
    // detail), then state writes: op, key, m, m args (see `StateWrite`). The fence is checked
    // before anything else: a worker that lost its lease writes nothing, whatever it holds.
    static let commitScript = LuaScript("""
    if ARGV[12] ~= '' and redis.call('HGET', KEYS[8], 'token') ~= ARGV[12] then
      return redis.error_reply('FENCED ' .. (redis.call('HGET', KEYS[8], 'owner') or ''))
    end
    local progress = tonumber(redis.call('GET', KEYS[1]) or '0')
    local first = tonumber(ARGV[1])
    if progress > first then return {0, progress} end
    if progress < first then return redis.error_reply('GAP ' .. progress) end
    local last = 13 + 4 * tonumber(ARGV[11])
    -- Check every state write before writing anything: Redis does not roll a script back.
    local i = last
    while i <= #ARGV do
      local op, m = ARGV[i], tonumber(ARGV[i+2])
      local pairs_ = op == 'HSET' or op == 'ZADD' or op == 'HINCRBY'
      if not m or i + 2 + m > #ARGV or (pairs_ and m % 2 ~= 0) or (op == 'ZPRUNE' and m ~= 2) or (op == 'SET' and m ~= 1)
         or not (pairs_ or op == 'ZREM' or op == 'ZPRUNE' or op == 'SET') then
        return redis.error_reply('ERR invalid state write ' .. tostring(op) .. ' with ' .. tostring(m) .. ' arguments')
      end
      i = i + 3 + m
    end
    i = 13
    while i < last do
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[10], '*', 'raw', ARGV[i], 'topic', ARGV[7], 'partition', ARGV[8],
                 'offset', ARGV[i+1], 'reason', ARGV[i+2], 'detail', ARGV[i+3], 'worker', ARGV[9])
      redis.call('HINCRBY', KEYS[6], ARGV[i+2], 1)
      i = i + 4
    end
    if tonumber(ARGV[5]) > 0 then redis.call('HINCRBY', KEYS[7], ARGV[6], ARGV[5]) end
    local CH = 2000
    while i <= #ARGV do
      local op, key, m = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2])
      local a, z = i + 3, i + 2 + m
      if op == 'HSET' or op == 'ZADD' or op == 'ZREM' then
        for c = a, z, CH do redis.call(op, key, unpack(ARGV, c, math.min(c + CH - 1, z))) end
      elseif op == 'HINCRBY' then
        for c = a, z, 2 do redis.call('HINCRBY', key, ARGV[c], ARGV[c+1]) end
      elseif op == 'SET' then
        redis.call('SET', key, ARGV[a])
      elseif op == 'ZPRUNE' then
        local old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. ARGV[a])
        for _, member in ipairs(old) do redis.call('DEL', ARGV[a+1] .. member) end
        if #old > 0 then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[a]) end
      end
      i = z + 1
    end
    -- The batch last, just before the progress: nothing above can leave a batch without its progress.
    local id = ''
    if ARGV[3] ~= '' then
      local n = redis.call('INCR', KEYS[3])
      id = redis.call('XADD', KEYS[2], '*', 'b', ARGV[3], 'n', n)
      redis.call('INCRBY', KEYS[4], ARGV[4])
    end
    redis.call('SET', KEYS[1], ARGV[2])
    return {1, id}
    """)

    /// Commits one unit atomically (see `FeatureStoreLayout`). Throws `FeatureStoreError.gap`
    /// when the stored progress is behind `unit.firstOffset`, `RedisError` when Redis fails (retry
    /// the same unit: a unit that did get written comes back as `.duplicate`).
    public func commit(_ unit: CommitUnit) throws -> CommitOutcome {
        let keys = [layout.progress(topic: unit.topic, partition: unit.partition), layout.featureStream(unit.shard),
                    layout.appended(unit.shard), layout.rows(unit.shard), layout.deadLetters,
                    layout.deadLetterCount, layout.lost, layout.lease(topic: unit.topic, partition: unit.partition)].map { Array($0.utf8) }
        var args: [[UInt8]] = [
            s("\(unit.firstOffset)"), s("\(unit.lastOffset + 1)"), unit.encodedBatch ?? [], s("\(unit.rows)"),
            s("\(unit.lostRows)"), s(FeatureStoreLayout.lostField(topic: unit.topic, partition: unit.partition)),
            s(unit.topic), s("\(unit.partition)"), s(unit.worker), s("\(deadLetterMaxLength)"), s("\(unit.deadLetters.count)"),
            s(unit.leaseToken.map { "\($0)" } ?? ""),
        ]
        args.reserveCapacity(args.count + 4 * unit.deadLetters.count + unit.stateWrites.reduce(0) { $0 + 3 + $1.args.count })
        for d in unit.deadLetters {
            var detail = d.detail
            var raw = d.raw
            if raw.count > Self.deadLetterMaxRawBytes {
                detail += " (raw truncated from \(raw.count) bytes)"
                raw = Array(raw.prefix(Self.deadLetterMaxRawBytes))
            }
            args.append(raw); args.append(s("\(d.offset)")); args.append(s(d.reason)); args.append(s(detail))
        }
        for w in unit.stateWrites {
            args.append(s(w.operation.rawValue)); args.append(w.key); args.append(s("\(w.args.count)"))
            args.append(contentsOf: w.args)
        }
        let result: Result<RedisReply, RedisError>
        do { result = .success(try Self.commitScript.run(redis, keys: keys, args: args)) }
        catch { result = .failure(error) }
        if case .failure(let error) = result, case .server(let message) = error, message.contains("GAP ") {
            let progress = Int64(message.split(separator: " ").last.map(String.init) ?? "") ?? -1
            throw FeatureStoreError.gap(topic: unit.topic, partition: unit.partition, progress: progress,
                                        firstOffset: unit.firstOffset)
        }
        if case .failure(let error) = result, case .server(let message) = error, let at = message.range(of: "FENCED") {
            // Redis may put script context around the error text: take what follows the marker.
            let owner = message[at.upperBound...].split(separator: " ").first.map(String.init) ?? ""
            throw FeatureStoreError.fenced(topic: unit.topic, partition: unit.partition, token: unit.leaseToken ?? -1,
                                           owner: owner.isEmpty ? nil : owner)
        }
        let reply = try result.get()
        guard let e = reply.elements, e.count == 2, let flag = e[0].integer else {
            throw FeatureStoreError.unexpectedReply("commit script returned \(reply)")
        }
        if flag == 0 { return .duplicate(progress: e[1].integer ?? -1) }
        let id = e[1].text ?? ""
        return .committed(streamId: id.isEmpty ? nil : id)
    }

    /// The next offset of `partition` not yet covered (0 when nothing was committed).
    public func readProgress(topic: String, partition: Int32) throws -> Int64 {
        let key = layout.progress(topic: topic, partition: partition)
        let r = try redis.command(["GET", key])
        if r.isNull { return 0 }
        guard let v = r.integer, v >= 0 else {
            throw FeatureStoreError.unexpectedReply("\(key) holds \(r), not an offset ≥ 0; it is written only by featurize's "
                                                    + "commit script — restore it or delete the key to re-read the partition from offset 0")
        }
        return v
    }

    // MARK: Offset resets

    /// Records that `partition`'s stored progress is beyond the broker's high watermark
    /// (`sr:offsetreset:detected` += 1, `sr:offsetreset:last` = `description`).
    public func recordOffsetReset(topic: String, partition: Int32, description: String) throws {
        let field = FeatureStoreLayout.lostField(topic: topic, partition: partition)
        let r = try redis.pipeline([["HINCRBY", layout.offsetResetsDetected, field, "1"],
                                    ["HSET", layout.offsetResetLast, field, description]])
        for reply in r { try reply.throwingIfError() }
    }

    static let resetScript = LuaScript("""
    local progress = tonumber(redis.call('GET', KEYS[1]) or '0')
    if progress ~= tonumber(ARGV[1]) then return {0, progress} end
    redis.call('SET', KEYS[1], ARGV[2])
    redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
    return {1, tonumber(ARGV[2])}
    """)

    /// Moves `partition`'s progress from `from` back to `to` (the broker's earliest offset) in one
    /// script, counting it in `sr:offsetreset:applied`. Returns false (and changes nothing) when
    /// the stored progress is no longer `from` (another worker moved it).
    public func resetProgress(topic: String, partition: Int32, from: Int64, to: Int64, description: String) throws -> Bool {
        let keys = [layout.progress(topic: topic, partition: partition), layout.offsetResetsApplied, layout.offsetResetLast]
        let reply = try Self.resetScript.run(redis, keys: keys.map(s),
                                             args: [s("\(from)"), s("\(to)"),
                                                    s(FeatureStoreLayout.lostField(topic: topic, partition: partition)), s(description)])
        guard let e = reply.elements, e.count == 2, let flag = e[0].integer else {
            throw FeatureStoreError.unexpectedReply("offset-reset script returned \(reply)")
        }
        return flag == 1
    }

    // MARK: Back-pressure and retention

    /// Batches appended to shard `s` and not yet consumed by trainers (appended − trained).
    public func pending(shard: Int) throws -> Int64 {
        let r = try redis.pipeline([["GET", layout.appended(shard)], ["GET", layout.trained(shard)]])
        return (r[0].integer ?? 0) - (r[1].integer ?? 0)
    }

    /// Pending batches of several shards in one round trip.
    public func pending(shards: [Int]) throws -> [Int: Int64] {
        guard !shards.isEmpty else { return [:] }
        let r = try redis.pipeline(shards.flatMap { [["GET", layout.appended($0)], ["GET", layout.trained($0)]] })
        var out: [Int: Int64] = [:]
        for (k, s) in shards.enumerated() {
            if case .error(let m) = r[2 * k] { throw RedisError.server(m) }
            out[s] = (r[2 * k].integer ?? 0) - (r[2 * k + 1].integer ?? 0)
        }
        return out
    }

    /// Trims shard `s`'s stream to the trainers' retain id (`XTRIM MINID`), if they set one.
    /// Returns the number of entries deleted.
    @discardableResult
    public func applyRetention(shard: Int) throws -> Int {
        let r = try redis.command(["GET", layout.retain(shard)])
        guard let id = r.text, !id.isEmpty else { return 0 }
        return Int(try redis.command(["XTRIM", layout.featureStream(shard), "MINID", id]).integer ?? 0)
    }

    // MARK: Heartbeats

    /// Writes a worker heartbeat (a JSON object; `last_seen_ms` is added).
    public func heartbeat(worker: String, info: [String: Any]) throws {
        var info = info
        info["worker"] = worker
        info["last_seen_ms"] = Int64(Date().timeIntervalSince1970 * 1000)
        let data = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys])
        try redis.command(bytes: [s("HSET"), s(layout.workers), s(worker), Array(data)])
    }

    /// Removes a worker's heartbeat (clean shutdown).
    public func removeWorker(_ worker: String) throws {
        try redis.command(["HDEL", layout.workers, worker])
    }
}

@inline(__always) func s(_ string: String) -> [UInt8] { Array(string.utf8) }
